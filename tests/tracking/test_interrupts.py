"""Ctrl-C and SIGTERM inside a job: deferred over store writes, never lost (real signals)."""

import gc
import os
import signal
import time
import weakref

import pytest

from initlab.engine.callbacks import InterruptCheck
from initlab.tracking import interrupts


def _signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # Python runs the handler at its next check


def test_ctrl_c_raises_at_once_and_the_previous_handler_comes_back():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupts.handling():
        _signal_self(signal.SIGINT)
        pytest.fail("not interrupted")
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_raises_terminated_a_keyboard_interrupt():
    with pytest.raises(interrupts.Terminated), interrupts.handling():
        _signal_self(signal.SIGTERM)
    assert issubclass(interrupts.Terminated, KeyboardInterrupt)


def test_a_second_signal_raises_at_once_unless_only_the_first_may():
    """An ensemble worker process gets Ctrl-C twice (from the terminal, and passed on by the
    main process): with ``once`` the echo is ignored while the runs are being ended."""
    ended = []
    with pytest.raises(KeyboardInterrupt), interrupts.handling(once=True):
        try:
            _signal_self(signal.SIGINT)
        except KeyboardInterrupt:
            _signal_self(signal.SIGINT)  # the echo, while the first is handled
            ended.append("every run")
            raise
    assert ended == ["every run"]
    with pytest.raises(KeyboardInterrupt), interrupts.handling():
        try:
            _signal_self(signal.SIGINT)
        except KeyboardInterrupt:
            _signal_self(signal.SIGINT)  # a second Ctrl-C in the main process acts at once
            ended.append("not reached")
    assert ended == ["every run"]


def test_a_signal_during_a_store_write_is_raised_when_the_write_is_done():
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts.handling():
        with interrupts.store_write():
            _signal_self(signal.SIGINT)
            done.append("rest of the write")
        done.append("after the write")
    assert done == ["rest of the write"]


def test_an_interrupt_swallowed_by_a_gc_callback_is_raised_at_the_next_batch():
    """Python reports an exception raised in a weakref callback as 'Exception ignored' and goes
    on: that is how a Ctrl-C got lost inside SQLAlchemy's callbacks during training."""

    class Thing:
        pass

    check = InterruptCheck()
    with interrupts.handling():
        thing = Thing()
        ref = weakref.ref(thing, lambda _: _signal_self(signal.SIGINT))  # noqa: F841
        del thing
        gc.collect()  # the callback runs; the KeyboardInterrupt raised in it is swallowed
        with pytest.raises(KeyboardInterrupt):
            check.on_train_batch_end()
