"""The run's Lightning logger, and the one way the rest of the code finds it on a trainer."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from initlab.tracking import interrupts
from initlab.tracking.store import log_metrics

log = logging.getLogger(__name__)
DEFAULT_FLUSH_S = 3.0  # tracking.heartbeat_s: the longest a kill -9 can lose


def mlflow_logger(trainer: L.Trainer) -> MLFlowLogger | None:
    """The trainer's MLflow logger bound to a run, if any (None: tracking is off)."""
    return next((lg for lg in trainer.loggers
                 if isinstance(lg, MLFlowLogger) and lg.run_id), None)


def set_run_tag(trainer: L.Trainer, key: str, value: Any) -> None:
    """Tag the trainer's MLflow run (rank zero only; nothing without tracking)."""
    logger = mlflow_logger(trainer)
    if logger is not None and trainer.is_global_zero:
        logger.experiment.set_tag(logger.run_id, key, str(value))


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger bound to a run that ``tracked_run`` owns: Lightning logs the
    metrics, but must not end the run (it would mark FINISHED after fit, before the test).

    Metrics are buffered and written in one ``log_batch`` every ``flush_every_s`` seconds by a
    background thread (started in each process that logs, so DDP ranks spawned with the logger
    flush too), when fit or test ends (``finalize``, also on failure and on Ctrl-C), and when the
    run ends (``close``): a synchronous SQLite transaction per logging step cost about 15 ms, a
    quarter of a Fashion-MNIST epoch, and ``kill -9`` loses at most ``flush_every_s`` seconds."""

    def __init__(self, *args: Any, flush_every_s: float = DEFAULT_FLUSH_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every_s = max(0.1, float(flush_every_s))
        self._pending: list[Any] = []
        self._runtime()

    def _runtime(self) -> None:
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one flush at a time, in order
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._last_flush = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:  # DDP spawn pickles the trainer with its loggers
        state = self.__dict__.copy()
        for key in ("_lock", "_write_lock", "_stop", "_flusher"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runtime()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        batch = [Metric(re.sub(r"[^a-zA-Z0-9_/. -]+", "", k), float(v), now_ms, step or 0)
                 for k, v in metrics.items() if not isinstance(v, str)]
        with self._lock:
            self._pending += batch
        if self._flusher is None and not self._stop.is_set():
            self._flusher = threading.Thread(target=self._flush_regularly, daemon=True,
                                             name="initlab-metrics-flush")
            self._flusher.start()
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def _flush_regularly(self) -> None:
        while not self._stop.wait(self.flush_every_s):
            try:
                self.flush()
            except Exception as err:  # noqa: BLE001 - the store is busy or gone: retry later
                log.warning("MLflow: could not write buffered metrics: %s", err)

    def flush(self) -> None:
        """Write the buffered metrics (MLflow takes at most 1,000 per batch); on failure they
        stay buffered for the next flush."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                self._last_flush = time.monotonic()
                return
            with interrupts.store_write():  # a signal acts after the write, not inside it
                try:
                    log_metrics(self.experiment, self.run_id, pending)
                except BaseException:
                    with self._lock:
                        self._pending[:0] = pending
                    raise
            self._last_flush = time.monotonic()

    def finalize(self, status: str = "success") -> None:  # noqa: D102
        self.flush()

    def close(self) -> None:
        """Stop the background flushes and write what is left (the run is ending)."""
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=30)
        self.flush()

    def log_hyperparams(self, params: Any) -> None:  # params are logged flat by tracked_run
        pass
