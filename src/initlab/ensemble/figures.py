"""A group's figures (each member's diagnostics figures and training curves, the PNGs its
ordinary run would have) drawn in one helper process while the group trains on.

Drawing a figure costs about 0.1 s of matplotlib on one core, and an S4 member has five: for
60 members that is half a minute, while the stacked step of such small nets keeps only one
core busy.  ``FigureWriter.submit(fn, *args)`` hands the drawing to the helper and returns a
``Drawing``; the member's run logs the file (``Member.close``) once it is drawn.  A group of
fewer than 32 members (or a one-core machine) draws in this process: starting the helper
(imports) costs more than it saves.  If the helper dies, the figure is drawn here instead.

``fn`` is a module-level drawing function (``path = fn(*args)``): only plain data (numbers,
lists, dicts, tensors) crosses to the helper, nothing of the run or the store."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# Smaller groups draw in this process: measured, a 16-member group's helper (started once per
# group, its imports at full priority) cost the Optuna benchmark more than it saved.
HELPER_FROM_MEMBERS = 32


def _helper_started() -> None:
    """In the helper process.  Ctrl-C reaches the whole process group: the helper ignores it
    (no traceback of its own); the launcher's process handles it and stops the helper on its
    way out.  The lowest CPU priority: torch's threads in the training process wait for each
    other at every parallel op, so a core the helper holds must be theirs at once when they
    want it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(19)


@dataclass
class Drawing:
    """A figure for a member's run: ``folder`` is where under the run's artifacts it goes."""

    future: Future
    fn: Callable[..., Path | None]
    args: tuple
    folder: str | None

    def path(self) -> Path | None:
        try:
            return self.future.result()
        except BrokenProcessPool:
            log.warning("the figure helper process died: drawing %s here", self.fn.__name__)
            return self.fn(*self.args)


class FigureWriter:
    """The helper process starts with the first figure: a group that draws none (tracking or
    diagnostics off) never starts one, whose imports would take a core from torch's threads."""

    def __init__(self, members: int, helper: bool | None = None) -> None:
        if helper is None:
            helper = members >= HELPER_FROM_MEMBERS and (os.cpu_count() or 1) > 1
        self.in_helper = bool(helper)
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, fn: Callable[..., Path | None], *args: Any,
               folder: str | None = None) -> Drawing:
        if self.in_helper:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_helper_started)
            try:
                return Drawing(self._pool.submit(fn, *args), fn, args, folder)
            except BrokenProcessPool:
                self.in_helper = False
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:  # noqa: BLE001 - raised where the figure is logged
            future.set_exception(err)
        return Drawing(future, fn, args, folder)

    def close(self) -> None:
        """Stop the helper (figures not yet logged are not needed: their runs ended)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
