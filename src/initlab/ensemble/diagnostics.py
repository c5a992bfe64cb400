"""``diagnostics=...`` in the ensemble engine: each member gets what ``InitDiagnostics`` gives
its Trainer-path run (same config keys, metric keys, steps, artifacts and tags), measured on the
member's own ``nn.Module`` by the same functions (``initlab.diagnostics.probes``).

The member's current weights are copied out of the stacked parameters into its module
(``StackedModel.load_into``: a plain ``load_state_dict``) at the moments diagnostics run: at
init, at a sampled step, every ``jacobian_every_n_steps`` steps.  A sampled step's gradient
norm is the member's slice of the stacked gradient (its own: the loss is a sum over members) and
its update ratio compares the member's slice before and after the stacked optimizer step,
exactly what the callback compares around the Trainer's step.  A member that stopped (diverged,
pruned) is measured no more; its last Jacobian figure is still written before its run ends.
The figures are drawn by the group's ``FigureWriter`` (in a helper process for a large group)
and logged when the member's run ends (``Member.close``)."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from initlab.diagnostics import jacobian, probes
from initlab.diagnostics.callback import INITIAL_WEIGHTS, InitDiagnostics
from initlab.diagnostics.layerstats import layers_of
from initlab.diagnostics.records import ARTIFACT_DIR, PREFIX, probe_loss
from initlab.ensemble.figures import FigureWriter
from initlab.ensemble.members import Member
from initlab.ensemble.stacked import StackedModel
from initlab.tracking import interrupts
from initlab.tracking.artifacts import save_weights

log = logging.getLogger(__name__)
TARGET = "initlab.diagnostics.callback.InitDiagnostics"


def diagnostics_node(member: Member):
    node = (member.cfg.get("callbacks") or {}).get("diagnostics")
    return node if node is not None and node.get("_target_") else None


class MemberDiagnostics:
    """One member's diagnostics; ``cb`` holds the parsed settings (the callback's own
    constructor reads the config keys, so both engines read them the same way)."""

    def __init__(self, member: Member, cb: InitDiagnostics, stacked: StackedModel,
                 figures: FigureWriter, folder: Path) -> None:
        self.member, self.cb, self.s = member, cb, cb.settings
        self.figures, self.folder = figures, folder  # the member's own files: a folder each
        folder.mkdir(parents=True, exist_ok=True)
        self.net = member.job.module.model
        self.layers = layers_of(self.net)
        names = {id(mod): name for name, mod in self.net.named_modules()}
        self.keys = [f"{names[id(layer.weight)]}.weight" for layer in self.layers]
        x, y = member.job.datamodule.probe_batch(cb.probe_size)
        self.x, self.y = x.to(stacked.device, stacked.dtype), y.to(stacked.device)
        self.loss_fn = probe_loss(member.job.module, self.y)
        self.before: list[torch.Tensor] = []
        self.grads: list[torch.Tensor | None] = []
        self.step_stats: dict[str, dict[str, float]] = {}
        self.checked_first = False
        self.last_jacobian: tuple[int, dict] | None = None

    # ---- writing to the member's run ---------------------------------------------------------
    def _log(self, metrics: dict[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        if finite:
            self.member.log(finite, step)

    def _signal(self, ratio: float | None, when: str) -> None:
        m = self.member
        set_tag = None if m.run is None else m.tag
        self.cb.signal = probes.signal_change(self.cb.signal, ratio, self.cb.vanishing_below,
                                              self.cb.exploding_above, set_tag,
                                              f"{m.name}: {when}")

    def _title(self) -> str:
        run = self.member.run
        return run.tags().get("mlflow.runName", run.run_id)

    def _artifacts(self, paths: list[Path], folder: str) -> None:
        with interrupts.store_write():
            for path in paths:
                self.member.run.log_artifact(path, folder)

    def _draw(self, drawings: list[probes.Drawing]) -> None:
        """Figures for the member's run, drawn by the group's ``FigureWriter`` and logged under
        ``diagnostics/`` before the run ends (``Member.close``)."""
        self.member.drawings += [self.figures.submit(fn, *args, folder=ARTIFACT_DIR)
                                 for fn, args in drawings]

    # ---- the moments -----------------------------------------------------------------------
    def at_init(self) -> None:
        """Before the first step (the member's module still holds its initial weights)."""
        run = self.member.run
        if run is not None and self.cb.initial_weights:
            with tempfile.TemporaryDirectory(prefix="initlab-diag-") as tmp:
                self._artifacts([save_weights(self.net, Path(tmp) / INITIAL_WEIGHTS)], "weights")
        r = probes.measure_at_init(self.net, self.x, self.loss_fn, self.layers, self.s)
        self._log(r.metrics, 0)
        self._signal(r.ratio, "at initialization:")
        if run is not None:
            record, drawings = probes.init_outputs(r, len(self.x), self.s, self._title(),
                                                   self.folder)
            self._artifacts([record], ARTIFACT_DIR)
            self._draw(drawings)
        probes.release(r.m)

    def before_step(self, stacked: StackedModel, i: int) -> None:
        """A sampled step, after the backward pass: the member's weights and gradient norms."""
        self.before = [stacked.params[k][i].detach().clone() for k in self.keys]
        grads = [stacked.grad(k) for k in self.keys]
        self.grads = [g[i].detach().norm() if g is not None else None for g in grads]

    def after_step(self, stacked: StackedModel, i: int) -> None:
        after = [stacked.params[k][i].detach() for k in self.keys]
        self.step_stats = probes.update_stats(self.layers, self.before, after, self.grads)
        self.before = []

    def jacobian_at(self, stacked: StackedModel, i: int, step: int) -> None:
        stacked.load_into(i, self.net)
        jac = probes.jacobian_of(self.net, self.x, self.layers, self.s, None)
        if jac is not None:
            self.last_jacobian = (step, jac)
            self._log(jacobian.flat_metrics(jac, PREFIX), step)

    def measure(self, stacked: StackedModel, i: int, step: int) -> None:
        """The training-time statistics, with the sampled step's update stats."""
        stacked.load_into(i, self.net)
        metrics, ratio = probes.measure_during(self.net, self.x, self.loss_fn, self.layers,
                                               self.s, self.step_stats)
        self._log(metrics, step)
        self.step_stats = {}
        if not self.checked_first:
            self.checked_first = True
            self._signal(ratio, "after the first diagnostics step:")

    def at_end(self) -> None:
        """The Jacobian figure at the last sampled step, logged before the run ends."""
        if not (self.s.plot and self.last_jacobian and self.member.run is not None):
            return
        step, jac = self.last_jacobian
        self._draw([probes.spectrum_drawing(jac, step, self._title(), self.folder)])


class GroupDiagnostics:
    """The group's members' diagnostics, driven by the engine's loop (``GroupTrainer``).  The
    members' configs are equal but for init and seed, so one schedule serves them all."""

    def __init__(self, members: list[Member], stacked: StackedModel, figures: FigureWriter,
                 folder: Path) -> None:
        self.stacked = stacked
        self.by_index: dict[int, MemberDiagnostics] = {}
        self.cb: InitDiagnostics | None = None
        for i, m in enumerate(members):
            node = diagnostics_node(m)
            if node is not None:
                self.by_index[i] = MemberDiagnostics(m, instantiate(node), stacked, figures,
                                                     folder / f"diagnostics-{i}")
                self.cb = self.by_index[i].cb
        self.sample = False
        self.seconds = 0.0

    def _live(self, active: torch.Tensor):
        return [(i, d) for i, d in self.by_index.items()
                if not d.member.done and bool(active[i])]

    def at_init(self) -> None:
        start = time.perf_counter()
        for d in self.by_index.values():
            d.at_init()
        self.seconds += time.perf_counter() - start

    def due(self, step: int, epoch: int, batch_idx: int, batches: int) -> bool:
        """Whether the coming optimizer step (``step`` done so far) is sampled: as
        ``InitDiagnostics._due_step``."""
        cb = self.cb
        if cb is None or not cb.train_stats:
            self.sample = False
        elif cb.every_n_steps:
            self.sample = (step + 1) % cb.every_n_steps == 0
        else:
            self.sample = batch_idx + 1 >= batches and (epoch + 1) % cb.every_n_epochs == 0
        return self.sample

    def before_step(self, active: torch.Tensor) -> None:
        if self.sample:
            for i, d in self._live(active):
                d.before_step(self.stacked, i)

    def after_step(self, active: torch.Tensor, step: int) -> None:
        """After the optimizer step (``step``: steps done, the Trainer's ``global_step``)."""
        cb = self.cb
        if cb is None:
            return
        start = time.perf_counter()
        if cb.jacobian and cb.jacobian_every and step > 0 and step % cb.jacobian_every == 0:
            for i, d in self._live(active):
                d.jacobian_at(self.stacked, i, step)
        if self.sample:
            self.sample = False
            for i, d in self._live(active):
                d.after_step(self.stacked, i)
                if cb.every_n_steps:
                    d.measure(self.stacked, i, step)
        self.seconds += time.perf_counter() - start

    def epoch_end(self, active: torch.Tensor, step: int) -> None:
        if self.cb is None or self.cb.every_n_steps:
            return
        start = time.perf_counter()
        for i, d in self._live(active):
            if d.step_stats:
                d.measure(self.stacked, i, step)
        self.seconds += time.perf_counter() - start

    def at_end(self, i: int) -> None:
        d = self.by_index.get(i)
        if d is not None:
            d.at_end()

    def report(self) -> None:
        if self.by_index:
            log.info("diagnostics of %d members took %.2f s", len(self.by_index), self.seconds)
