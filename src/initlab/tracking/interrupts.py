"""Ctrl-C and SIGTERM that always stop a training job, and never in the middle of a store write;
and exceptions in other threads that are never lost.

Python raises ``KeyboardInterrupt`` in whatever Python code runs when it handles the signal.
Two places make that unreliable for a job:

* a weakref or garbage-collection callback (SQLAlchemy registers such callbacks): the exception
  is printed as "Exception ignored in ..." and lost, and training goes on;
* an MLflow write into SQLite: interrupted mid-transaction, it can leave the store unable to
  take the run's final status, and the run stays RUNNING.

So, inside ``handling()``: the handler records the signal and raises at once, unless a store
write is in progress (``store_write()``, main thread), in which case it raises when the write is
done; and ``engine.callbacks.InterruptCheck``, a Lightning callback, raises again at the end of
the next training or validation batch if a recorded signal did not stop training (in any thread:
that is how a job run by a sweeper's worker thread learns of it).  SIGTERM (a killed job, a
preempted node) raises ``Terminated``, a ``KeyboardInterrupt``: the run ends KILLED as on Ctrl-C.

The outermost ``handling()`` may name a ``before_raise`` hook, run in the handler before the
exception is raised (a multirun's main process uses it to stop its worker processes first).

``watching_threads()`` records an exception that ends any other thread (``threading.excepthook``,
which otherwise prints it and goes on): ``InterruptCheck`` raises it as ``ThreadFailed`` at the
next batch, and the run that watched ends FAILED.

``note_kept()`` records what an interrupted job keeps (run, epochs, last checkpoint; the engine's
``InterruptNote`` calls it), and ``interrupted_message()`` turns it into the one line ``train.py``
prints instead of a traceback, exiting with ``exit_code()`` (130, SIGTERM 143).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


class ThreadFailed(RuntimeError):
    """An exception ended another thread of the job (its traceback is in the message)."""


class _State:
    received: int | None = None  # the signal received while handling() is active
    raised = False  # whether its exception has been raised
    writing = 0  # nesting depth of store_write() in the main thread
    depth = 0  # nesting depth of handling()
    before_raise: Callable[[int], None] | None = None
    once = False  # only the first signal raises (a worker process: the rest are echoes)
    thread_errors: list[str] = []  # tracebacks of threads that died, while watching_threads()
    starts: list[int] = []  # where each open watching_threads() began in thread_errors
    exiting: KeyboardInterrupt | None = None  # the interrupt the process exits with


_state = _State()


def exception_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _raise(signum: int) -> None:
    _state.raised = True
    hook, _state.before_raise = _state.before_raise, None  # once: a second signal raises at once
    if hook is not None:
        try:
            hook(signum)
        except Exception:  # noqa: BLE001 - the hook must never keep the signal from acting
            traceback.print_exc()
    raise exception_for(signum)


def _on_signal(signum: int, frame) -> None:
    _state.received = signum
    if _state.once and _state.raised:
        return
    if not _state.writing:
        _raise(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handling(before_raise: Callable[[int], None] | None = None,
             once: bool = False) -> Iterator[None]:
    """Install the handlers for SIGINT and SIGTERM for the block (main thread only; elsewhere a
    no-op), restoring the previous ones after.  Inside an enclosing ``handling()`` the state (a
    signal already received) is kept, and the handlers are put back at the end (Lightning sets
    SIGINT to ignored when it handles a Ctrl-C).  ``once`` (outermost only): signals after the
    first that raised are ignored, not raised while the runs are being ended: an ensemble
    worker process gets Ctrl-C from the terminal and again from the main process."""
    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in SIGNALS}
    outer = _state.depth == 0
    if outer:
        _state.received, _state.raised, _state.writing = None, False, 0
        _state.before_raise, _state.once = before_raise, once
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if outer:
            _state.received, _state.before_raise, _state.once = None, None, False


def active() -> bool:
    """Whether this process's main thread is inside ``handling()``."""
    return _state.depth > 0


def received() -> int | None:
    """The signal received inside ``handling()``, acted on or not (None: none)."""
    return _state.received


@contextlib.contextmanager
def store_write() -> Iterator[None]:
    """A write that a signal must not cut in half: the signal's exception is raised after it
    (main thread; in other threads, which signals never interrupt, a no-op)."""
    if not _main_thread():
        yield
        return
    _state.writing += 1
    try:
        yield
    finally:
        _state.writing -= 1
        if not _state.writing and _state.received is not None and not _state.raised:
            _raise(_state.received)


def pending() -> int | None:
    """The signal received and not yet acted on (None: none, or a store write is under way)."""
    if _main_thread() and _state.writing:
        return None
    return _state.received


# ---- exceptions in other threads ----------------------------------------------------------
def _excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is not SystemExit:
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                  args.exc_traceback))
        _state.thread_errors.append(f"thread {name!r} died:\n{text}")
    _previous_hook(args)


_previous_hook = threading.excepthook


@contextlib.contextmanager
def watching_threads() -> Iterator[Callable[[], str | None]]:
    """Record, for the block, every exception that ends another thread; yields a function that
    returns the first one's traceback since the block began (None: none)."""
    global _previous_hook
    if not _state.starts:
        _previous_hook = threading.excepthook
        threading.excepthook = _excepthook
        _state.thread_errors = []
    errors, start = _state.thread_errors, len(_state.thread_errors)
    _state.starts.append(start)
    try:
        yield lambda: errors[start] if len(errors) > start else None
    finally:
        _state.starts.pop()
        if not _state.starts:
            threading.excepthook = _previous_hook


def thread_failure() -> str | None:
    """The traceback of the first thread that died since the innermost ``watching_threads()``
    began (None: none, or not watching)."""
    if not _state.starts or len(_state.thread_errors) <= _state.starts[-1]:
        return None
    return _state.thread_errors[_state.starts[-1]]


# ---- what an interrupted job kept, in one line ------------------------------------------------
@dataclass
class Kept:
    """What a job interrupted by a signal leaves behind (noted by the engine when it stops)."""

    run_id: str | None = None  # its MLflow run (ended KILLED by ``tracked_run``), if tracked
    epochs: int = 0  # epochs completed: their metrics are kept
    steps: int = 0  # optimizer steps taken
    checkpoint: str | None = None  # the last checkpoint file written
    files: list[str] = field(default_factory=list)  # metric files in the output dir (CSV...)
    job: str = ""  # the job's overrides, in a multirun


_kept: list[Kept] = []


def note_kept(kept: Kept) -> None:
    """Record what an interrupted job of this process kept (read by ``interrupted_message``)."""
    _kept.append(kept)


def kept_notes() -> list[Kept]:
    return list(_kept)


def exiting(exc: KeyboardInterrupt) -> None:
    """The process exits because of ``exc``, caught by the entry point (which prints one line
    instead of a traceback): what an uncaught exception's ``sys.excepthook`` would have told the
    ``atexit`` handlers (a multirun's parent run then ends KILLED, not FAILED)."""
    _state.exiting = exc


def exiting_interrupted() -> bool:
    return _state.exiting is not None


def exit_code(exc: BaseException) -> int:
    """The shell's code for the signal that ended the process: 143 (SIGTERM), 130 (SIGINT)."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def _describe(kept: Kept) -> str:
    where = f"run {kept.run_id} ended KILLED" if kept.run_id else "no MLflow run (tracking off)"
    metrics = (f"{kept.epochs} epoch{'s' if kept.epochs != 1 else ''} ({kept.steps} steps) of "
               "metrics" + (f" ({', '.join(kept.files)})" if kept.files else ""))
    ckpt = f"last checkpoint {kept.checkpoint}" if kept.checkpoint else "no checkpoint"
    return f"{where}; kept: {metrics}, {ckpt}"


def interrupted_message(exc: BaseException, multirun: bool = False) -> str:
    """One line for the console: which signal, which run ended KILLED, what was kept."""
    head = f"Interrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'Ctrl-C'}): "
    notes = kept_notes()
    if not multirun:
        return head + (_describe(notes[-1]) if notes
                       else "stopped before training began; no metrics or checkpoint kept")
    if notes:  # the job ran in this process (the basic launcher)
        job = f" [{notes[-1].job}]" if notes[-1].job else ""
        return (head + f"multirun stopped, no further job started; the job in progress{job}: "
                + _describe(notes[-1]))
    return (head + "multirun stopped, no further job started; the jobs in progress (worker "
            "processes) ended their runs KILLED; finished jobs are kept")
