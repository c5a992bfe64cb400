"""Ctrl-C and SIGTERM that always stop a training job, and never in the middle of a store write.

Python raises ``KeyboardInterrupt`` in whatever Python code runs when it handles the signal.
Two places make that unreliable for a job:

* a weakref or garbage-collection callback (SQLAlchemy registers such callbacks): the exception
  is printed as "Exception ignored in ..." and lost, and training goes on;
* an MLflow write into SQLite: interrupted mid-transaction, it can leave the store unable to
  take the run's final status, and the run stays RUNNING.

So, inside ``handling()``: the handler records the signal and raises at once, unless a store
write is in progress (``store_write()``), in which case it raises when the write is done; and
``engine.callbacks.InterruptCheck``, a Lightning callback, raises again at the end of the next training or
validation batch if a recorded signal did not stop training.  SIGTERM (a killed job, a preempted
node) raises ``Terminated``, a ``KeyboardInterrupt``: the run ends KILLED as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator



class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


class _State:
    received: int | None = None  # the signal received while handling() is active
    raised = False  # whether its exception has been raised
    writing = 0  # nesting depth of store_write()


_state = _State()


def exception_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _raise(signum: int) -> None:
    _state.raised = True
    raise exception_for(signum)


def _on_signal(signum: int, frame) -> None:
    _state.received = signum
    if not _state.writing:
        _raise(signum)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Install the handlers for SIGINT and SIGTERM for the block (main thread only; elsewhere,
    and inside an enclosing ``handling()``, a no-op), restoring the previous ones after."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is _on_signal):
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    _state.received, _state.raised, _state.writing = None, False, 0
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _state.received = None


@contextlib.contextmanager
def store_write() -> Iterator[None]:
    """A write that a signal must not cut in half: the signal's exception is raised after it."""
    _state.writing += 1
    try:
        yield
    finally:
        _state.writing -= 1
        if not _state.writing and _state.received is not None and not _state.raised:
            _raise(_state.received)


def pending() -> int | None:
    """The signal received and not yet acted on (None: none, or a store write is under way)."""
    return None if _state.writing else _state.received
