"""The ensemble launcher's worker processes on the CPU: a batch's stacked members split over
the cores.

One process keeps about one core busy: a stacked step of small nets is too small for torch's
intra-op threads, and a member's records (MLflow's ORM, its figures, Hydra's job files) are
Python under one GIL.  With W workers, this process and W-1 spawned children each take a share
of every large group (``placement.split_groups``) and do for it what the launcher does here:
prepare the members (Hydra's ``run_job``), train them stacked, record and end their runs.  Each
has ``cores // W`` torch threads.

The children start once per multirun, when the sweep's check learns how many jobs a launch gets
(the launcher's ``warm_up`` hook): they import what training needs while the check composes the
jobs, and serve every batch (each of the Optuna sweeper's too).
A child is sent a cloudpickled callable and its argument over a pipe: the composed job configs
and Hydra's state (``PartsJob``, as ``submit.GroupJob`` does for submitit), and it answers
with plain ``submit.Outcome``s.  Children are daemonic: they end with this process, at once if
the sweep is refused (and so draw their figures themselves: no helper process of their own).

Signals: a child ignores SIGINT while idle and handles SIGINT / SIGTERM like a job while it
works (``tracking.interrupts``: its runs end KILLED).  Ctrl-C in a terminal reaches every
process of the group; a signal to the main process alone is passed on to the children by the
sweep's callback (``tracking.sweep``), which waits for their runs to end."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def _serve(conn: Any, threads: int) -> None:
    """A worker process: torch with ``threads`` threads and the imports of training first
    (while the main process composes the sweep's jobs), then each ``(work, payload)`` it is
    sent, answering ``("done", result)`` or ``("raised", exception)``, until the main process
    is gone (daemonic: it is also ended when the main process exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # PartsJob handles it while it works
    _warm(threads)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        work, payload = message
        try:
            import cloudpickle

            answer = ("done", cloudpickle.loads(work)(payload))
        except BaseException as err:  # noqa: BLE001 - KeyboardInterrupt too: sent back
            answer = ("raised", err)
        try:
            conn.send(answer)
        except Exception as err:  # noqa: BLE001 - e.g. an exception that does not pickle
            conn.send(("raised", RuntimeError(f"its answer could not be sent back "
                                              f"({type(err).__name__}: {err})")))


def _warm(threads: int) -> None:
    """Torch with ``threads`` threads, and the imports of a member's preparation, training and
    records: done while the main process composes the sweep's jobs."""
    import torch

    torch.set_num_threads(max(1, threads))
    import mlflow.tracking  # noqa: F401
    import initlab.engine.build  # noqa: F401
    import initlab.ensemble.engine  # noqa: F401
    import initlab.jobs.train  # noqa: F401
    import hydra_plugins.initlab_ensemble_launcher.members  # noqa: F401


class PartsJob:
    """What a worker runs: shares of stacked groups through the ensemble launcher's own
    ``_run_groups`` (prepare, train, record), with the main process's Hydra state."""

    def __init__(self, launcher: Any) -> None:
        from hydra.core.singleton import Singleton

        self.settings = {**launcher.settings, "figure_helper": False}  # the cores are busy
        self.config, self.hydra_context = launcher.config, launcher.hydra_context
        self.state = Singleton.get_state()

    def __call__(self, parts: list) -> dict[int, Any]:
        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, setup_globals

        from hydra_plugins.initlab_ensemble_launcher.launcher import EnsembleLauncher
        from initlab.ensemble.submit import outcome
        from initlab.tracking import interrupts

        Singleton.set_state(self.state)
        launcher = EnsembleLauncher(**self.settings, worker=True)
        launcher.setup(hydra_context=self.hydra_context, task_function=None,
                       config=self.config)
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        with interrupts.handling(once=True):  # Ctrl-C comes from the terminal and the main
            returns = launcher._run_groups(parts)  # process: the second is ignored
        return {i: outcome(ret) for i, ret in returns.items()}


class WorkerGone(RuntimeError):
    """A worker process ended (killed) before it answered."""


class Worker:
    """One spawned worker process (daemonic: it ends with this process) and its pipe."""

    def __init__(self, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, threads), daemon=True,
                                       name="initlab-ensemble-worker")
        self.process.start()
        theirs.close()

    def send(self, work: bytes, payload: Any) -> None:
        """Hand it ``cloudpickle.loads(work)(payload)`` to run."""
        self.conn.send((work, payload))

    def result(self) -> dict[int, Any]:
        """The outcomes of what it was sent; its exception (KeyboardInterrupt too) re-raised."""
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerGone(f"worker process {self.process.pid} ended (exit code "
                             f"{self.process.exitcode})") from None
        if kind == "raised":
            raise value
        return value


_STARTED: list[Worker] = []


def threads_each(processes: int) -> int:
    """Torch threads for each of ``processes`` processes sharing this machine's cores."""
    from initlab.ensemble.placement import usable_cores

    return max(1, usable_cores() // processes)


def start(processes: int) -> list[Worker]:
    """The worker processes that, with this one, make ``processes``: started now if none were
    (each with ``threads_each(processes)`` torch threads), else those of them still alive."""
    if not _STARTED:
        threads = threads_each(processes)
        _STARTED.extend(Worker(threads) for _ in range(processes - 1))
        log.debug("%d worker process(es) started, %d torch thread(s) each", processes - 1,
                  threads)
    return [w for w in _STARTED if w.process.is_alive()][:processes - 1]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """This process's torch threads set to ``threads`` for the block."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
