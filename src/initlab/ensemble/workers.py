"""The ensemble launcher's worker processes on the CPU: a batch's stacked members split over
the cores.

One process keeps about one core busy: a stacked step of small nets is too small for torch's
intra-op threads, and a member's records (MLflow's ORM, its figures, Hydra's job files) are
Python under one GIL.  With W workers, this process and W-1 spawned children each take a share
of every large group (``placement.split_groups``) and do for it what the launcher does here:
prepare the members (Hydra's ``run_job``), train them stacked, record and end their runs.  Each
has ``cores // W`` torch threads.

The children start once per multirun, when the sweep's check learns how many jobs a launch gets
(the launcher's ``warm_up`` hook), and help it compose them (``compose_jobs``); they import
what training needs when first idle, and serve every batch (each of the Optuna sweeper's too).
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
    """A worker process: each ``(work, payload)`` it is sent, answering ``("done", result)`` or
    ``("raised", exception)``, until it is sent None; the imports of training whenever it is
    first idle (composing jobs, its first work, needs none of them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # PartsJob handles it while it works
    import torch

    torch.set_num_threads(max(1, threads))
    warm = False
    while True:
        try:
            if not warm and not conn.poll(0.1):
                _warm()
                warm = True
                continue
            message = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if message is None:
            return
        work, payload = message
        try:
            import cloudpickle

            answer = ("done", cloudpickle.loads(work)(payload))
        except BaseException as err:  # noqa: BLE001 - KeyboardInterrupt too: sent back
            answer = ("raised", err)
        try:
            conn.send(answer)
        except Exception:  # noqa: BLE001 - e.g. an exception that does not pickle
            conn.send(("raised", RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}")))


def _warm() -> None:
    """The imports of a member's preparation, training and records, done while the main
    process composes the sweep's jobs."""
    import mlflow.tracking  # noqa: F401
    import initlab.engine.build  # noqa: F401
    import initlab.ensemble.engine  # noqa: F401
    import initlab.jobs.train  # noqa: F401
    import hydra_plugins.initlab_ensemble_launcher.members  # noqa: F401


class ComposeJob:
    """Job configs composed in a worker: Hydra's config loader on the sweep's master config,
    with the main process's Hydra state; None for a job that does not compose (the main process
    composes it again, and reports its error)."""

    def __init__(self, loader: Any, master: Any) -> None:
        from hydra.core.singleton import Singleton

        self.loader, self.master = loader, master
        self.state = Singleton.get_state()

    def __call__(self, jobs: list[list[str]]) -> list[Any]:
        from hydra.core.singleton import Singleton

        Singleton.set_state(self.state)
        out = []
        for overrides in jobs:
            try:
                out.append(self.loader.load_sweep_config(self.master, list(overrides)))
            except Exception:  # noqa: BLE001 - composed again where the error is reported
                out.append(None)
        return out


COMPOSE_CHUNK = 4  # jobs a worker is handed at a time


def compose_jobs(loader: Any, master: Any, jobs: list[list[str]]) -> list[Any]:
    """The jobs' configs (None where one does not compose), composed here from the front and
    by the worker processes from the back, ``COMPOSE_CHUNK`` jobs at a time, until they meet:
    a worker still busy with its imports simply takes fewer."""
    import cloudpickle

    out: list[Any] = [None] * len(jobs)
    workers = [w for w in _STARTED if w.process.is_alive()]
    if not workers or len(jobs) <= COMPOSE_CHUNK:
        for k, overrides in enumerate(jobs):
            out[k] = _compose_or_none(loader, master, overrides)
        return out
    work = cloudpickle.dumps(ComposeJob(loader, master))
    front, back = 0, len(jobs)
    pending: dict[Worker, tuple[int, int]] = {}

    def hand(worker: Worker) -> None:
        nonlocal back
        if back - front > COMPOSE_CHUNK:
            start = back - COMPOSE_CHUNK
            worker.send(work, jobs[start:back])
            pending[worker], back = (start, back), start

    def take(worker: Worker) -> None:
        start, stop = pending.pop(worker)
        try:
            out[start:stop] = worker.result()
        except Exception as err:  # noqa: BLE001 - composed here instead
            log.debug("a worker could not compose jobs %d-%d: %s", start, stop - 1, err)
            for k in range(start, stop):
                out[k] = _compose_or_none(loader, master, jobs[k])

    for worker in workers:
        hand(worker)
    while front < back:
        out[front] = _compose_or_none(loader, master, jobs[front])
        front += 1
        for worker in [w for w in pending if w.ready()]:
            take(worker)
            hand(worker)
    for worker in list(pending):
        take(worker)
    return out


def _compose_or_none(loader: Any, master: Any, overrides: list[str]) -> Any:
    try:
        return loader.load_sweep_config(master, list(overrides))
    except Exception:  # noqa: BLE001 - the caller composes it again and reports the error
        return None


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
        with interrupts.handling():
            returns = launcher._run_groups(parts)
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

    def ready(self) -> bool:
        """Whether its answer (or its end) is there to take."""
        return self.conn.poll()

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


def start(count: int, threads: int) -> list[Worker]:
    """This process's worker processes: ``count`` started now if none were (each with
    ``threads`` torch threads), else those there are."""
    if not _STARTED:
        _STARTED.extend(Worker(threads) for _ in range(count))
        log.debug("%d worker process(es) started, %d torch thread(s) each", count, threads)
    return [w for w in _STARTED if w.process.is_alive()]


def stop() -> None:
    """End this process's worker processes (each leaves its loop; killed if it does not)."""
    while _STARTED:
        worker = _STARTED.pop()
        with contextlib.suppress(OSError):
            worker.conn.send(None)
        worker.process.join(10)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)


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
