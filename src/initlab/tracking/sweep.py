"""The sweep's parent run: a Hydra callback that, before a multirun's jobs start, creates the
store and experiment once, opens a parent run the jobs attach to, and makes sure the multirun
ends with true statuses, whatever ends it.

* Normal end: the parent ends FINISHED (FAILED if an exception ended a thread of this process).
* Ctrl-C / SIGTERM to the main process: the parent file is marked ``stopping`` (no job starts a
  new run after that), the signal is passed on to the launcher's worker processes (joblib's loky
  workers), which end their runs KILLED, and the main process waits up to ``stop_grace_s``
  seconds for them before it raises; the parent ends KILLED.
* Any other exit (an exception, a worker's exception, ``sys.exit``): the parent ends FAILED
  (KILLED if a ``KeyboardInterrupt`` ended the process).
* On every exit, a child run still RUNNING (its process was killed by the launcher, or died) is
  ended too: KILLED when the multirun was interrupted, FAILED otherwise; worker processes still
  alive are stopped (SIGTERM, then SIGKILL after ``stop_grace_s``), so none outlives the
  multirun.
* While the multirun runs, a heartbeat stamps the parent run (``initlab.heartbeat``): if the main
  process is killed with ``kill -9``, ``python -m initlab.repair`` ends it FAILED, and each worker
  process notices its parent is gone and ends its run KILLED.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from initlab.tracking import interrupts
from initlab.tracking.heartbeat import (ACTIVE_RUNS, DEFAULT_INTERVAL_S, TAG_HEARTBEAT,
                                        TAG_HEARTBEAT_S, Heartbeat, stamp)
from initlab.tracking.record import TAG_OVERRIDES, TAG_SWEEP_ID
from initlab.tracking.secrets import mask
from initlab.tracking.store import PARENT_RUN_FILE, prepare_store, read_parent_run

log = logging.getLogger(__name__)
TAG_ENDED_BY = "initlab.ended_by"  # set on a child run the sweep ended for a dead job
_FAILURE: str | None = None


def multirun_failure() -> str | None:
    """Why the multirun that just ended failed although Hydra saw no error (an exception ended
    a thread of its main process), or None.  ``train.py`` exits with code 1 when there is one:
    Hydra turns an exception raised by a callback into a warning."""
    return _FAILURE


def child_pids(pid: int | None = None) -> list[int]:
    """The processes whose parent is ``pid`` (this process by default), from ``/proc`` (Linux),
    else from ``pgrep -P``; empty where neither is available."""
    pid = os.getpid() if pid is None else pid
    proc = Path("/proc")
    if proc.is_dir():
        children = []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
            if len(fields) > 1 and int(fields[1]) == pid:
                children.append(int(entry.name))
        return children
    import subprocess

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                             timeout=5).stdout
        return [int(p) for p in out.split()]
    return []


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2:].split()[0] != "Z"
    return True


def jobs_in_worker_processes(config: DictConfig) -> bool:
    """Whether the launcher runs the jobs in worker processes of this one.  The basic launcher
    runs them here: their runs are this process's own (``ACTIVE_RUNS``), so nothing needs
    reaping or stopping elsewhere.  The ensemble launcher may train shares of its groups in
    worker processes on the CPU (``initlab.ensemble.workers``), or submit them (submitit)."""
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    return bool(launcher) and not launcher.endswith("BasicLauncher")


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class SweepParentRun(Callback):
    """Hydra callback: the multirun's parent run and its lifecycle (see the module's doc).

    ``stop_grace_s``: how long an interrupted multirun waits for its workers to end their runs
    (and, at exit, for worker processes to stop) before it kills them."""

    def __init__(self, enabled: bool = True, stop_grace_s: float = 30.0) -> None:
        self.enabled = enabled
        self.stop_grace_s = float(stop_grace_s)
        self._reset()

    def _reset(self) -> None:
        self._client = None
        self._run_id: str | None = None
        self._experiment_id: str | None = None
        self._parent_file: Path | None = None
        self._heartbeat: Heartbeat | None = None
        self._stack: contextlib.ExitStack | None = None
        self._thread_failure = None
        self._processes = False  # the launcher runs jobs in worker processes of this one
        self._children: set[int] = set()  # this process's children at the last heartbeat
        self._signal: int | None = None
        self._uncaught: type[BaseException] | None = None
        self._previous_excepthook = None

    # Hydra's joblib launcher pickles the callbacks to its workers: they get an inert copy.
    def __getstate__(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "stop_grace_s": self.stop_grace_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # ---- start ---------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or not config.get("tracking") or not config.tracking.get("enabled"):
            return
        from mlflow.tracking import MlflowClient

        tracking = OmegaConf.to_container(config.tracking, resolve=True)
        heartbeat_s = float(tracking.get("heartbeat_s") or DEFAULT_INTERVAL_S)
        self._processes = jobs_in_worker_processes(config)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(interrupts.handling(before_raise=self._stopping))
        self._thread_failure = self._stack.enter_context(interrupts.watching_threads())
        atexit.register(self._at_exit)
        self._previous_excepthook, sys.excepthook = sys.excepthook, self._excepthook

        try:
            with interrupts.store_write():  # a Ctrl-C meanwhile acts once the parent exists
                experiment_id = prepare_store(tracking)
                sweep_dir = Path(config.hydra.sweep.dir).resolve()
                sweep_dir.mkdir(parents=True, exist_ok=True)
                sweep_id = f"{sweep_dir.parent.name}/{sweep_dir.name}"
                overrides = mask(" ".join(config.hydra.overrides.task)) or "(none)"
                self._client = MlflowClient(tracking["tracking_uri"])
                tags = {TAG_SWEEP_ID: sweep_id, TAG_OVERRIDES: overrides, "initlab.kind": "sweep",
                        "initlab.sweep_dir": str(sweep_dir), "host": platform.node(),
                        "initlab.pid": str(os.getpid()), TAG_HEARTBEAT: stamp(),
                        TAG_HEARTBEAT_S: f"{heartbeat_s:g}"}
                run = self._client.create_run(experiment_id, run_name=f"sweep {sweep_id}",
                                              tags=tags)
                self._run_id, self._experiment_id = run.info.run_id, experiment_id
                reap = self._reap if self._processes else None
                self._heartbeat = Heartbeat(self._client, self._run_id, heartbeat_s,
                                            on_tick=reap).start()
                self._parent_file = sweep_dir / PARENT_RUN_FILE
                self._write_parent_file(  # jobs use their own config's URI: "store" is masked
                    {"run_id": self._run_id, "sweep_id": sweep_id,
                     "experiment_id": experiment_id, "store": mask(tracking["tracking_uri"]),
                     "pid": os.getpid(), "host": platform.node()})
        except Exception:  # no parent run (the store is unreachable): leave signals alone
            if self._run_id is None:
                self._release()
            raise

    def _release(self) -> None:
        """Put back the signal handlers and hooks this multirun installed."""
        atexit.unregister(self._at_exit)
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._previous_excepthook

    def _write_parent_file(self, content: dict[str, Any]) -> None:
        tmp = self._parent_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(content))
        os.replace(tmp, self._parent_file)  # jobs never read half a file

    # ---- an interrupt --------------------------------------------------------------------
    def _stopping(self, signum: int) -> None:
        """Run by the signal handler before it raises: stop new runs, pass the signal on to the
        worker processes, and give them ``stop_grace_s`` seconds to end their runs."""
        self._signal = signum
        if self._run_id is None:
            return
        with contextlib.suppress(Exception):
            parent = read_parent_run(self._parent_file.parent)
            if parent is not None and parent.get("run_id") == self._run_id:
                self._write_parent_file({**parent, "stopping": True})
        if not self._processes:
            return  # the jobs run in this process: the signal's exception stops them
        workers = child_pids()
        if not workers:
            return
        log.warning("%s: stopping %d worker process(es) and their runs (up to %.0f s)",
                    signal.Signals(signum).name, len(workers), self.stop_grace_s)
        _signal_all(workers, signum)
        deadline = time.monotonic() + self.stop_grace_s
        while time.monotonic() < deadline:
            try:  # a worker killed meanwhile (joblib aborts its pool) will not end its run
                if not any(self._process_alive(r) for r in self._running_children()):
                    return
            except Exception as err:  # noqa: BLE001 - the store is busy: look again
                log.debug("could not read the sweep's child runs: %s", err)
            if not any(alive(pid) for pid in workers):
                return
            time.sleep(0.25)

    def _running_children(self, run_id: str | None = None) -> list[Any]:
        """The sweep's child runs still RUNNING, other than those this process runs itself."""
        runs = self._client.search_runs(
            [self._experiment_id],
            f"tags.`mlflow.parentRunId` = '{run_id or self._run_id}' "
            f"and attributes.status = 'RUNNING'")
        return [r for r in runs if r.info.run_id not in ACTIVE_RUNS]

    def _reap(self) -> None:
        """Every heartbeat: end FAILED the child runs whose worker process died without ending
        them (killed by the pool when a sibling job failed, by the OOM killer...).  The store is
        searched only when a child process seen at an earlier heartbeat is gone: a search
        returns every RUNNING run with all its params (60 ensemble members: a few tenths of a
        second of this process's time, every heartbeat).  Runs a process left that died
        unseen between two heartbeats are ended when the multirun ends (``_end_children``)."""
        run_id = self._run_id
        if run_id is None or interrupts.received() is not None:
            return  # ending, or an interrupt is being handled: _finish does it
        children = {pid for pid in child_pids() if alive(pid)}  # a zombie is gone
        gone, self._children = self._children - children, children
        if not gone:
            return
        for run in self._running_children(run_id):
            if not self._process_alive(run):
                log.warning("run %s (%s): its process %s died without ending it: ending it "
                            "FAILED", run.info.run_id, run.info.run_name,
                            run.data.tags.get("initlab.pid"))
                self._client.set_tag(run.info.run_id, TAG_ENDED_BY, "sweep")
                self._client.set_terminated(run.info.run_id, "FAILED")

    @staticmethod
    def _process_alive(run: Any) -> bool:
        """Whether the process of a RUNNING child run may still end it (unknown: yes)."""
        tags = run.data.tags
        pid = tags.get("initlab.pid", "")
        if tags.get("host") != platform.node() or not pid.isdigit():
            return True
        return alive(int(pid))

    def _excepthook(self, exc_type, exc, tb) -> None:
        self._uncaught = exc_type
        (self._previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)

    # ---- the end -------------------------------------------------------------------------
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._run_id is None:
            return
        failure = self._thread_failure() if self._thread_failure is not None else None
        self._finish("FAILED" if failure else "FINISHED")
        if failure:  # Hydra turns a callback's exception into a warning: train.py asks
            global _FAILURE
            _FAILURE = f"an exception ended a thread of the multirun:\n{failure}"
            log.error("the multirun's parent run ended FAILED: %s", _FAILURE)

    def _at_exit(self) -> None:
        """The process exits before the multirun reached its end."""
        interrupted = self._signal is not None or interrupts.exiting_interrupted() or (
            self._uncaught is not None and issubclass(self._uncaught, KeyboardInterrupt))
        self._finish("KILLED" if interrupted else "FAILED")

    def _finish(self, status: str) -> None:
        run_id, self._run_id = self._run_id, None
        if run_id is None:
            return
        if self._heartbeat is not None:
            self._heartbeat.stop()
        with interrupts.store_write():
            if status != "FINISHED":
                self._stop_workers(run_id)
            self._end_children(run_id, "KILLED" if status == "KILLED" else "FAILED")
            self._end(run_id, status)
        self._release()

    def _end_children(self, run_id: str, status: str) -> None:
        """End the child runs a dead or killed job left RUNNING."""
        try:
            for run in self._running_children(run_id):
                log.warning("run %s (%s) was left RUNNING by its job: ending it %s",
                            run.info.run_id, run.info.run_name, status)
                with contextlib.suppress(Exception):
                    self._client.set_tag(run.info.run_id, TAG_ENDED_BY, "sweep")
                    self._client.set_terminated(run.info.run_id, status)
        except Exception as err:  # noqa: BLE001 - the store is gone: nothing more to do
            log.warning("could not end the sweep's child runs: %s", err)

    def _end(self, run_id: str, status: str) -> None:
        try:
            run = self._client.get_run(run_id)
            if run.info.status != "RUNNING":
                return
            if run.info.lifecycle_stage == "deleted":  # discarded (a refused search): end it too
                self._client.restore_run(run_id)
                self._client.set_terminated(run_id, status)
                self._client.delete_run(run_id)
            else:
                self._client.set_terminated(run_id, status)
        except Exception as err:  # noqa: BLE001 - the store is gone: say so
            log.warning("could not mark the sweep's parent run %s as %s: %s", run_id, status, err)

    def _stop_workers(self, run_id: str) -> None:
        """Worker processes still alive when the multirun ends early: SIGTERM to each (a worker
        ends its run KILLED; an idle one exits), then SIGKILL, after ``stop_grace_s``, to those
        that ran a job of this sweep and are still there."""
        if not self._processes:
            return
        children = [pid for pid in child_pids() if alive(pid)]
        if not children:
            return
        _signal_all(children, signal.SIGTERM)
        try:
            runs = self._client.search_runs([self._experiment_id],
                                            f"tags.`mlflow.parentRunId` = '{run_id}'")
            ran = {int(r.data.tags["initlab.pid"]) for r in runs
                   if r.data.tags.get("host") == platform.node()
                   and r.data.tags.get("initlab.pid", "").isdigit()}
        except Exception:  # noqa: BLE001 - the store is gone: every child then
            ran = set(children)
        workers = [pid for pid in children if pid in ran]
        deadline = time.monotonic() + self.stop_grace_s
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.1)
        _signal_all([pid for pid in workers if alive(pid)], signal.SIGKILL)
