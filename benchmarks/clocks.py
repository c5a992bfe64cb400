"""Lightning callbacks that time a real ``initlab`` run for ``bench_train.py``.

They are added to a run like any extra callback (``+callbacks.clock._target_=clocks.EpochClock``,
with this folder on ``PYTHONPATH``), so the run under test is the platform's own code path.
"""

from __future__ import annotations

import atexit
import os
import time

from lightning.pytorch.callbacks import Callback


def rss_bytes() -> int:
    """Current resident set size of this process (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM: of this program only, unlike ru_maxrss,
    which Linux carries over from the pre-exec copy of a forking parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class EpochClock(Callback):
    """Wall-clock of each training epoch, from ``on_train_epoch_start`` to the next epoch's start
    (the last epoch: to ``on_train_end``).  An epoch therefore includes its steps, every hook,
    the validation pass that ends it (if any), the epoch-end metric logging and the progress
    bar; it excludes set-up before fit and the test pass after it.

    ``EpochClock.last`` is the instance of the latest run; with ``report=True`` it also prints
    ``CLOCK key=value`` lines (wall-clock seconds since the epoch, RSS) for a parent process."""

    last: "EpochClock | None" = None

    def __init__(self, report: bool = False) -> None:
        self.report = report
        self.starts: list[float] = []
        self.end: float | None = None
        self.steps = 0
        self.rss: list[int] = []
        EpochClock.last = self
        if report:  # the whole process's peak, test pass and MLflow records included
            atexit.register(lambda: self._say("peak_rss", peak_rss_bytes()))

    def _say(self, key: str, value: float) -> None:
        if self.report:
            print(f"CLOCK {key}={value!r}", flush=True)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())
        if len(self.starts) > 1:
            self.rss.append(rss_bytes())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if len(self.starts) == 1 and batch_idx == 0:
            self._say("first_step", time.time())

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = time.perf_counter()
        self.steps = trainer.global_step
        self.rss.append(rss_bytes())
        for i, rss in enumerate(self.rss):
            self._say(f"rss_after_epoch{i + 1}", rss)

    @property
    def epochs(self) -> list[float]:
        marks = [*self.starts, self.end]
        return [b - a for a, b in zip(marks[:-1], marks[1:])]

    @property
    def fit_seconds(self) -> float:
        return self.end - self.starts[0]
