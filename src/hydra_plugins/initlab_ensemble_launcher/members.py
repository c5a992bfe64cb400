"""A group's members from Hydra jobs to ensemble members and back to ``JobReturn``s.

``prepare_member`` runs the job through Hydra's ``run_job`` with a task function that only
checks and prepares it (``initlab.engine.build.prepare``, under the member's seed: initial
weights bit for bit those of its ordinary job).  ``train`` cuts the prepared groups into chunks
(``initlab.ensemble.memory``), places the chunks on the devices (``initlab.ensemble.placement``),
trains each device's chunks in order in one worker thread, and fills each ``JobReturn`` with
the member's objective, or with the exception that ended its chunk.

Workers share one process, and a member's records read Hydra's job context, a process-wide
singleton: ``RecordLock`` lets one thread at a time through from a member's ``enter`` to the end
of its ``open``/``close``, and through every metrics write (one SQLite writer at a time)."""


import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, read_write

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    config: DictConfig          # its hydra node (runtime.output_dir set by run_job)
    job_return: JobReturn
    member: Any = None


def prepare_member(launcher: Any, cfg: DictConfig) -> Prepared:
    from initlab.config import refuse, validate
    from initlab.engine.build import prepare
    from initlab.ensemble.members import Member
    from initlab.errors import ConfigError
    from initlab.tracking.record import run_name

    made: dict[str, Any] = {}

    def task(task_cfg: DictConfig) -> None:
        try:
            validate(task_cfg)
            made["job"] = prepare(task_cfg)
            made["hydra"] = HydraConfig.instance().cfg  # its hydra node, output_dir set
            made["name"] = run_name(task_cfg)
        except ConfigError as err:
            refuse(err)

    ret = launcher.run_one(cfg, task, configure_logging=False)  # the group's log: _log_files
    if ret.status != JobStatus.COMPLETED:
        ret.return_value  # noqa: B018 - re-raises the exception while preparing (not a training failure)
    hydra = made["hydra"]
    # ${now:...} as the sweep resolved it (its config's resolver cache), not anew when the
    # member's run is created later (a different second: another folder, no parent run)
    for node, value in ((hydra.hydra.sweep, cfg.hydra.sweep.dir), (hydra.hydra.run, cfg.hydra.run.dir)):
        with read_write(node):
            node.dir = str(value)
    lock = launcher.record_lock
    member = _placed_class(Member)(index=int(cfg.hydra.job.num), cfg=ret.cfg, job=made["job"],
                                   name=made["name"], enter=lambda: lock.enter(hydra),
                                   output_dir=Path(hydra.hydra.runtime.output_dir))
    member.lock = lock
    return Prepared(hydra, ret, member)


class RecordLock:
    """One worker thread at a time through a member's records (module docstring); ``stop``
    asks every worker to end its chunk (its runs KILLED) at its next metrics write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mine = threading.local()
        self.stop = threading.Event()

    def held(self) -> bool:
        return getattr(self._mine, "held", False)

    def acquire(self) -> bool:
        """Take the lock unless this thread holds it; True if it was taken now."""
        if self.held():
            return False
        self._lock.acquire()
        self._mine.held = True
        return True

    def release(self) -> None:
        if self.held():
            self._mine.held = False
            self._lock.release()

    def enter(self, hydra: DictConfig) -> None:
        self.acquire()  # released at the end of the member's open() / close()
        HydraConfig.instance().set_config(hydra)


_PLACED: dict[type, type] = {}


def _placed_class(member_class: type) -> type:
    """``member_class`` whose open/close/flush go through the member's ``RecordLock``."""
    if member_class not in _PLACED:
        class Placed(member_class):
            lock: RecordLock

            def open(self, device: str, heartbeat_s: float) -> None:
                try:
                    super().open(device, heartbeat_s)
                finally:
                    self.lock.release()

            def close(self, error: BaseException | None = None) -> None:
                try:
                    super().close(error)
                finally:
                    self.lock.release()

            def flush(self) -> None:
                if self.lock.stop.is_set() and not self.done:
                    raise KeyboardInterrupt()  # another worker stopped: end this chunk too
                took = self.lock.acquire()
                try:
                    super().flush()
                finally:
                    if took:
                        self.lock.release()

        _PLACED[member_class] = Placed
    return _PLACED[member_class]


def _draw_curves(member: Any, figures: Any) -> None:
    """The curves figure ``jobs.train`` adds to a finished run, from the metrics as the store
    holds them, handed to the group's figure writer (logged when the run ends)."""
    from initlab.jobs.train import CURVE_METRICS
    from initlab.report.curves import metric_history, plot_curves

    run = member.run
    if run is None or member.output_dir is None:
        return
    member.flush()
    history = metric_history(run.client, run.run_id, CURVE_METRICS)
    if history:
        member.drawings.append(figures.submit(plot_curves, history, member.name,
                                              Path(member.output_dir) / "curves.png",
                                              member.cfg.dataset.get("num_classes")))


def _finish(member: Any) -> None:
    """What ``jobs.train`` adds to a finished run: its summary, printed once.  ``summarize``
    also logs it for the job's log file; an ordinary job's console handler drops that INFO
    line (``conf/hydra/job_logging``), but the launcher's console is Hydra's own (INFO), so
    the record is kept from it here."""
    from initlab.jobs.train import summarize

    def not_summary(record: logging.LogRecord) -> bool:
        return record.name != summarize.__module__  # its module's logger

    consoles = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    for handler in consoles:
        handler.addFilter(not_summary)
    try:
        summarize(member.cfg, member.metrics, member.run)
    finally:
        for handler in consoles:
            handler.removeFilter(not_summary)


def _log_files(prepared: list[Prepared]) -> list[logging.Handler]:
    """Every member's job log (``<output dir>/<job name>.log``) gets the group's log lines."""
    handlers = []
    fmt = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for p in prepared:
        path = Path(p.config.hydra.runtime.output_dir) / f"{p.config.hydra.job.name}.log"
        handler = logging.FileHandler(path, mode="a")
        handler.setFormatter(fmt)
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
    return handlers


def chunks(launcher: Any, prepared: list[Prepared], budget_bytes: int
           ) -> list[tuple[list[Prepared], float]]:
    """The group's chunks (at most as many members as ``budget_bytes`` holds) with their
    estimated costs (``initlab.ensemble.placement.chunk_cost``)."""
    import torch

    from initlab.ensemble.checks import PRECISIONS
    from initlab.ensemble.memory import member_bytes, members_per_chunk
    from initlab.ensemble.placement import chunk_cost

    first = prepared[0].member
    dm, model = first.job.datamodule, first.job.module.model
    n_train = len(dm.splits["train"][0])
    batch = min(dm.batch_size or n_train, n_train)
    dtype = getattr(torch, PRECISIONS[str(first.cfg.trainer.get("precision", "32-true"))])
    per_member = member_bytes(model, batch, dm.splits["train"][0][0].numel(), dtype)
    size = members_per_chunk(per_member, budget_bytes / 2**20, launcher.max_members)
    if size < len(prepared):
        log.info("%d members in chunks of at most %d (memory budget %.0f MB, max_members=%s)",
                 len(prepared), size, budget_bytes / 2**20, launcher.max_members)
    per_epoch = int(dm.steps_per_epoch or math.ceil(n_train / batch))
    steps = int(first.cfg.trainer.max_epochs) * per_epoch
    return [(prepared[i:i + size], chunk_cost(len(prepared[i:i + size]), per_member, steps))
            for i in range(0, len(prepared), size)]


def train_chunk(launcher: Any, chunk: list[Prepared], device: str | None = None) -> None:
    """Train one chunk on ``device`` and fill its members' ``JobReturn``s."""
    from initlab.ensemble.engine import GroupTrainer
    from initlab.jobs.train import objective

    try:
        full = launcher.records == "full"
        GroupTrainer([p.member for p in chunk], finish=_finish, logged_models=full,
                     device=device, draw=_draw_curves if full else lambda m, f: None,
                     figure_helper=launcher.figure_helper).run()
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - the members it ended fail with it (below)
        log.exception("the stacked group failed")
    finally:
        chunk[0].member.lock.release()  # if an exception left it held
    for p in chunk:
        if p.member.error is not None:  # the members that had not finished
            p.job_return.status = JobStatus.FAILED
            p.job_return.return_value = p.member.error
            continue
        try:
            p.job_return.return_value = objective(p.member.cfg, p.member.metrics)
            p.job_return.status = JobStatus.COMPLETED
        except Exception as err:  # noqa: BLE001 - e.g. optimized_metric never logged
            p.job_return.status, p.job_return.return_value = JobStatus.FAILED, err


def _worker(launcher: Any, chunks_: list[list[Prepared]], device: str,
            errors: list[BaseException], done: threading.Event) -> None:
    try:
        _train_chunks(launcher, chunks_, device, errors)
    finally:
        done.set()


def _train_chunks(launcher: Any, chunks_: list[list[Prepared]], device: str,
                  errors: list[BaseException]) -> None:
    """One device's chunks, in order; an interrupt (Ctrl-C, or another worker's) ends them."""
    for chunk in chunks_:
        if launcher.record_lock.stop.is_set():
            err: BaseException = KeyboardInterrupt()
        else:
            try:
                train_chunk(launcher, chunk, device)
                continue
            except BaseException as caught:  # noqa: BLE001 - handed to the main thread
                err = caught
                launcher.record_lock.stop.set()
                errors.append(caught)
        for p in chunk:  # stopped or never started (then no run was created)
            p.job_return.status = JobStatus.FAILED
            p.job_return.return_value = p.member.error or err


def train(launcher: Any, groups: list[list[Prepared]]) -> None:
    """Train every group's chunks, placed on ``launcher.placement_devices(cfg)``."""
    from initlab.ensemble.placement import plan
    from initlab.tracking import interrupts

    devices = launcher.placement_devices(groups[0][0].member.cfg)
    budget = min(d.budget_bytes for d in devices)
    cut = [c for g in groups for c in chunks(launcher, g, budget)]
    placed = plan([cost for _, cost in cut], len(devices))
    if len(devices) > 1:
        log.info("%d chunk(s) on %s: %s", len(cut), ", ".join(d.name for d in devices),
                 "; ".join(f"{d.name}: chunks {placed[k]}" for k, d in enumerate(devices)))
    handlers = _log_files([p for g in groups for p in g])
    launcher.record_lock.stop.clear()
    errors: list[BaseException] = []
    try:
        if len(devices) == 1:  # devices=null: each group's trainer says (engine.device_for)
            only = devices[0].name if launcher.devices is not None else None
            for chunk, _ in cut:
                train_chunk(launcher, chunk, only)
            return
        done = [threading.Event() for _ in devices]
        threads = [threading.Thread(target=_worker, name=f"ensemble-{d.name}-{k}", daemon=True,
                                    args=(launcher, [cut[i][0] for i in placed[k]], d.name,
                                          errors, done[k]))
                   for k, d in enumerate(devices)]
        # Held open here so that the workers' own (GroupTrainer's) never install or restore
        # threading.excepthook concurrently.  The main thread waits on events, not join(): a
        # join interrupted by Ctrl-C was seen to mark a running thread as ended (CPython 3.11).
        with interrupts.watching_threads():
            for t in threads:
                t.start()
            try:
                with interrupts.handling():
                    while not all(e.wait(0.2) for e in done):
                        pass
            except BaseException:
                launcher.record_lock.stop.set()  # each worker ends its chunk (runs KILLED)
                while not all(e.wait(0.2) for e in done):
                    pass
                raise
        for t in threads:
            t.join()
        for err in errors:
            if isinstance(err, KeyboardInterrupt):
                raise err
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
