"""The ensemble engine's loop: a group's members trained as one stacked model, each logging
what its Lightning job logs, at the same steps (``train/loss_step`` at every
``log_every_n_steps``-th step, the epoch's ``train/*``, ``val/*``, ``lr``, ``diverged`` at its
last step, ``test/*`` after the last step, ``init/*`` at step 0).

Each member draws its own batches (an ``IndexSampler`` with its own seed, as its data module
would).  A member whose loss sum is not finite at a check (every ``divergence_check_every``
steps and at epoch ends), or that its Optuna trial prunes, is masked out of the summed loss,
tested on its weights at that point, and its run ended; the others go on unaffected.
Each member's diagnostics (``diagnostics=...``) run on its own module: ``ensemble.diagnostics``."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from initlab.data.batches import IndexSampler
from initlab.engine.datamodule import TensorDataModule
from initlab.ensemble.checks import PRECISIONS
from initlab.ensemble.diagnostics import GroupDiagnostics
from initlab.ensemble.figures import FigureWriter
from initlab.ensemble.members import GroupHeartbeat, Member, group_interval_s
from initlab.ensemble.stacked import StackedModel
from initlab.inits import init_metrics
from initlab.tracking import interrupts
from initlab.tracking.artifacts import record_job
from initlab.tracking.context import HydraContext

log = logging.getLogger(__name__)


def device_for(cfg) -> torch.device:
    """``trainer=gpu`` (or ``auto``) trains on the first CUDA device when there is one."""
    accelerator = cfg.trainer.get("accelerator", "cpu")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def _sampler(dm: TensorDataModule) -> IndexSampler:
    return IndexSampler(len(dm.splits["train"][0]), dm.batch_size, shuffle=True,
                        seed=dm.shuffle_seed, drop_last=dm.drop_last, replacement=dm.replacement,
                        steps_per_epoch=dm.steps_per_epoch)


class GroupTrainer:
    """Trains ``members`` (one group: equal configs but for init and seed) together.
    ``finish(member)`` is called once a member's run holds everything but its end status."""

    def __init__(self, members: Sequence[Member],
                 finish: Callable[[Member], None] = lambda m: None,
                 logged_models: bool = True, device: torch.device | None = None,
                 draw: Callable[[Member, FigureWriter], None] = lambda m, f: None,
                 figure_helper: bool | None = None) -> None:
        self.members = list(members)
        self.finish, self.draw = finish, draw  # draw: the figures a run ends with (curves)
        self.figure_helper = figure_helper  # None: FigureWriter decides by the group's size
        self.logged_models = logged_models  # False: no dataset inputs / MLflow logged models
        cfg = self.members[0].cfg
        self.cfg = cfg
        self.device = device_for(cfg) if device is None else torch.device(device)  # placement
        self.dtype = getattr(torch, PRECISIONS[str(cfg.trainer.get("precision", "32-true"))])
        self.max_epochs = int(cfg.trainer.max_epochs)
        self.log_every = int(cfg.trainer.get("log_every_n_steps", 50))
        self.check_every = max(1, int(cfg.get("divergence_check_every", 20)))
        dm = self.members[0].job.datamodule
        self.binary = self.members[0].job.module.binary
        self.splits = {k: (x.to(self.device, self.dtype), y.to(self.device))
                       for k, (x, y) in dm.splits.items()}
        self.step = 0
        self.epoch = 0
        self.flush_every_s = group_interval_s(float(cfg.tracking.get("heartbeat_s") or 3.0),
                                              len(self.members))
        self._flushed = time.monotonic()

    def _flush(self, force: bool = False) -> None:
        """Write the members' buffered metrics (and heartbeats) every ``flush_every_s``
        seconds (``ensemble.members.group_interval_s``)."""
        if force or time.monotonic() - self._flushed >= self.flush_every_s:
            for m in self.members:
                if not m.done:
                    m.flush()
            self._flushed = time.monotonic()

    # ---- set-up ----------------------------------------------------------------------------
    def _device_label(self) -> str:
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)}) x1"
        return "cpu x1"

    def run(self) -> None:
        """Open every member's run, train, and end every run (FAILED on an exception)."""
        with interrupts.handling(), interrupts.watching_threads(), \
                GroupHeartbeat(self.members, self.flush_every_s), \
                tempfile.TemporaryDirectory(prefix="initlab-group-") as folder, \
                FigureWriter(len(self.members), self.figure_helper) as self.figures:
            self.folder = Path(folder)  # the members' diagnostics files until their runs end
            try:
                initial = [init_metrics(m.job.module.model) for m in self.members]
                for m, metrics in zip(self.members, initial):
                    m.open(self._device_label(), self.flush_every_s)
                    m.log(metrics, step=0)
                self._train()
            except BaseException as err:
                for m in self.members:
                    if not m.done:
                        try:
                            m.close(err)
                        except BaseException:  # noqa: BLE001 - end the other runs too
                            log.exception("could not end the run of member %s", m.name)
                raise

    def _optimizer(self, stacked: StackedModel):
        module = self.members[0].job.module
        optimizer = module.optimizer_factory(stacked.leaves())
        scheduler = module.scheduler_factory(optimizer) if module.scheduler_factory else None
        return optimizer, scheduler, module.scheduler_config.get("interval", "epoch")

    # ---- the loop --------------------------------------------------------------------------
    def _train(self) -> None:
        members = self.members
        stacked = StackedModel([m.job.module.model for m in members], self.binary, self.device,
                               self.dtype)
        self.stacked = stacked
        diag = self.diag = GroupDiagnostics(members, stacked, self.figures, self.folder)
        diag.at_init()
        optimizer, scheduler, interval = self._optimizer(stacked)
        samplers = [_sampler(m.job.datamodule) for m in members]
        batches = min(len(s) for s in samplers)
        x, y = self.splits["train"]
        active = torch.ones(len(members), dtype=torch.bool, device=self.device)
        for epoch in range(self.max_epochs):
            self.epoch = epoch
            if not bool(active.any()):
                break
            lr = float(optimizer.param_groups[0]["lr"])
            for s in samplers:
                s.set_epoch(epoch)
            sums = torch.zeros(len(members), dtype=self.dtype, device=self.device)
            correct = torch.zeros(len(members), dtype=torch.long, device=self.device)
            guard = torch.zeros(len(members), dtype=self.dtype, device=self.device)
            count = 0
            for batch_idx, batch in enumerate(zip(*samplers)):
                diag.due(self.step, epoch, batch_idx, batches)
                if all(i is None for i in batch):
                    loss, right = stacked.losses(x, y, per_member=False)
                    n = len(y)
                else:
                    idx = torch.stack([torch.arange(len(y)) if i is None else i for i in batch])
                    idx = idx.to(self.device)
                    loss, right = stacked.losses(x[idx], y[idx], per_member=True)
                    n = idx.shape[1]
                optimizer.zero_grad(set_to_none=True)
                torch.where(active, loss, torch.zeros_like(loss)).sum().backward()
                diag.before_step(active)
                optimizer.step()
                if scheduler is not None and interval == "step":
                    scheduler.step()
                loss = loss.detach()
                sums.add_(loss, alpha=n)
                correct.add_(right)
                guard.add_(loss)
                count += n
                self.step += 1
                diag.after_step(active, self.step)
                if self.step % self.log_every == 0:  # Lightning's step-logging condition
                    for m, value in zip(members, loss.tolist()):
                        if not m.done:
                            m.metrics["train/loss_step"] = value
                            m.log({"train/loss_step": value, "epoch": epoch}, self.step - 1)
                if self.step % self.check_every == 0:
                    guard = self._check(guard, active, sums, correct, count, lr)
                    self._flush()
            self._check(guard, active, sums, correct, count, lr)
            diag.epoch_end(active, self.step)
            self._epoch_end(active, sums, correct, count, lr)
            self._flush()
            if scheduler is not None and interval == "epoch":
                scheduler.step()
        # The last members end together: every one's figures are handed to the figure writer
        # first, and drawn while the runs before them are recorded and closed.
        ending = [(i, m) for i, m in enumerate(members) if not m.done]
        for i, m in ending:
            self._test(i, m, float(self.max_epochs))
        for i, m in ending:
            self._close(i, m)
        diag.report()

    def _check(self, guard, active, sums, correct, count, lr):
        """The divergence guard, per member: stop the members whose loss sum is not finite."""
        bad = (~torch.isfinite(guard)) & active
        if bool(bad.any()):
            for i in bad.nonzero().flatten().tolist():
                m = self.members[i]
                m.diverged(self.step)
                active[i] = False
                self._epoch_metrics(i, m, sums, correct, count, lr, diverged=1.0)
                self._test_and_close(i, m, float(self.epoch))
        return torch.zeros_like(guard)

    def _epoch_end(self, active, sums, correct, count, lr) -> None:
        for i, m in enumerate(self.members):
            if m.done or not bool(active[i]):
                continue
            metrics = self._epoch_metrics(i, m, sums, correct, count, lr, diverged=0.0)
            value = metrics.get(m.monitor) if m.monitor else None
            if value is not None and m.report(value, self.epoch):
                active[i] = False
                self._test_and_close(i, m, float(self.epoch + 1))

    def _epoch_metrics(self, i, m, sums, correct, count, lr, diverged: float) -> dict[str, float]:
        step = self.step - 1
        val = self._evaluate("val", i)
        if val:
            m.log({**val, "epoch": self.epoch}, step)
        n = sums.new_tensor(float(max(count, 1)))  # the Trainer path divides in the same dtype
        train = {"train/loss": float(sums[i] / n), "train/acc": float(correct[i].to(n.dtype) / n)}
        m.log({**train, "lr": lr, "diverged": diverged, "epoch": self.epoch}, step)
        m.metrics.update({**val, **train, "lr": lr, "diverged": diverged})
        return m.metrics

    def _evaluate(self, split: str, i: int) -> dict[str, float]:
        x, y = self.splits[split]
        if not len(y):
            return {}
        with torch.no_grad():
            params = {k: v[i] for k, v in self.stacked.params.items()}
            buffers = {k: v[i] for k, v in self.stacked.buffers.items()}
            loss, right = self.stacked.one(params, buffers, x, y)
        return {f"{split}/loss": float(loss), f"{split}/acc": float(right.to(loss.dtype) / len(y))}

    def _test_and_close(self, i: int, m: Member, epoch: float) -> None:
        self._test(i, m, epoch)
        self._close(i, m)

    def _test(self, i: int, m: Member, epoch: float) -> None:
        """The member's test metrics, and its last figures handed to the figure writer."""
        test = self._evaluate("test", i)
        m.log({**test, "epoch": epoch}, self.step)
        m.metrics.update(test)
        m.metrics.setdefault("diverged", 0.0)
        self.diag.at_end(i)
        self.draw(m, self.figures)

    def _close(self, i: int, m: Member) -> None:
        m.enter()
        model = self.stacked.load_into(i, m.job.module.model)
        if m.run is not None:
            out = HydraContext.current().output_dir or Path(tempfile.mkdtemp(prefix="initlab-"))
            record_job(m.run, m.cfg, model, out, (),
                       datamodule=m.job.datamodule if self.logged_models else None)
        self.finish(m)
        m.close()
