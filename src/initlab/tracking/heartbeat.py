"""A running run's heartbeat: a daemon thread that stamps the tag ``initlab.heartbeat`` (Unix
seconds) on the run every ``interval_s`` seconds while the process that owns it lives.  A RUNNING
run whose stamp stopped belongs to a process that died without ending it (``kill -9``, a lost
machine, the OOM killer); ``python -m initlab.repair`` marks such runs FAILED
(``initlab.tracking.repair``).

The thread can also watch the process's parent: a worker process of a multirun (joblib's loky
workers) whose multirun's main process is gone stops its run as SIGTERM would (KILLED), so no
worker trains on for a multirun that no longer exists.

No Lightning import here: the sweep's parent run (``tracking.sweep``) uses it too.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TAG_HEARTBEAT = "initlab.heartbeat"
TAG_HEARTBEAT_S = "initlab.heartbeat_interval"
DEFAULT_INTERVAL_S = 3.0
ORPHAN_GRACE_S = 60.0  # how long an orphaned worker's run may take to end before it exits
EXIT_ORPHANED = 128 + signal.SIGTERM
ACTIVE_RUNS: set[str] = set()  # runs this process owns and has not ended yet


def stamp() -> str:
    return f"{time.time():.3f}"


class Heartbeat:
    """Stamps ``run_id`` every ``interval_s`` seconds from a daemon thread, and, with
    ``parent_pid``, interrupts the main thread with SIGTERM once the parent process is gone."""

    def __init__(self, client: Any, run_id: str, interval_s: float = DEFAULT_INTERVAL_S,
                 parent_pid: int | None = None,
                 on_tick: Callable[[], None] | None = None) -> None:
        self.client, self.run_id = client, run_id
        self.interval_s = max(0.1, float(interval_s))
        self.parent_pid, self.on_tick = parent_pid, on_tick
        self._stop = threading.Event()
        self.parent_lost = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"initlab-heartbeat-{run_id[:8]}")

    def start(self) -> Heartbeat:
        ACTIVE_RUNS.add(self.run_id)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop stamping (the run is about to end); the run is no longer this process's."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        ACTIVE_RUNS.discard(self.run_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._check_parent()
            try:
                self.client.set_tag(self.run_id, TAG_HEARTBEAT, stamp())
                if self.on_tick is not None:
                    self.on_tick()
            except Exception as err:  # noqa: BLE001 - a busy store: the next beat will do
                log.debug("heartbeat of run %s: %s", self.run_id, err)

    def _check_parent(self) -> None:
        if self.parent_pid is None or self.parent_lost or os.getppid() == self.parent_pid:
            return
        self.parent_lost = True
        log.warning("the multirun's main process (pid %d) is gone: stopping run %s",
                    self.parent_pid, self.run_id)
        os.kill(os.getpid(), signal.SIGTERM)  # a real SIGTERM: the run ends KILLED
        if not self._stop.wait(ORPHAN_GRACE_S):  # the main thread did not end the run
            log.error("run %s did not stop within %.0f s of its multirun's end: exiting",
                      self.run_id, ORPHAN_GRACE_S)
            os._exit(EXIT_ORPHANED)


def exit_orphan(heartbeat: Heartbeat | None) -> None:
    """After its run ended: a worker process whose multirun is gone exits (nothing would ever
    give it another job, and its pool cannot take its result)."""
    if heartbeat is not None and heartbeat.parent_lost:
        logging.shutdown()
        os._exit(EXIT_ORPHANED)
