"""Several seeds per job (``objective_seeds: k``): the job trains seeds ``seed, seed+1, …,
seed+k-1`` one after the other, each an ordinary ``train(cfg)`` with its own MLflow run, and its
objective is the mean of ``optimized_metric`` over them.  At small scales one seed's noise is as
large as the effect a search looks for; the mean of k has sqrt(k) times less.

The k runs share the tag ``initlab.seed_group`` (and ``initlab.seed_index``,
``initlab.objective_seeds``), and each gets the metrics ``objective/mean``, ``objective/se``
(sd/sqrt(k)) and ``objective/n``.  In an Optuna trial the trial gets the same as user attributes
(``initlab.search.trial``: ``objective_mean``, ``objective_se``, ``objective_values``, the seeds,
the group and the run ids), and the sweeper tells Optuna the mean.

Pruning: seed 0 alone reports intermediate values to the trial (the others run with the pruning
callback unlinked), so the pruner judges a trial by its first seed.  When seed 0 is pruned or
diverges, the remaining seeds are not trained and the trial ends PRUNED; a later seed that
diverges prunes the trial too.  Every run ends as any run does: FINISHED (tagged
``optuna.state=PRUNED`` when pruned), FAILED or KILLED.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import statistics
import time
import uuid
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, open_dict

from initlab.config import validate
from initlab.config.schema.names import SEED_MAX
from initlab.errors import ConfigError
from initlab.jobs.train import train
from initlab.report.intervals import standard_error
from initlab.tracking import interrupts
from initlab.tracking.context import HydraContext
from initlab.tracking.run import extra_run_tags

log = logging.getLogger(__name__)

TAG_GROUP = "initlab.seed_group"
TAG_INDEX = "initlab.seed_index"
TAG_SEEDS = "initlab.objective_seeds"
METRIC_MEAN, METRIC_SE, METRIC_N = "objective/mean", "objective/se", "objective/n"
PRUNING = "initlab.search.pruning.OptunaPruning"
CHECKPOINTS = "lightning.pytorch.callbacks.ModelCheckpoint"


def train_seeds(cfg: DictConfig) -> dict[str, float]:
    """``train(cfg)`` for each of the job's ``objective_seeds`` seeds; the mean of every final
    metric over them (so ``objective(cfg, metrics)`` is the mean of ``optimized_metric``).
    With one seed (the default) this is ``train(cfg)`` itself."""
    k = int(cfg.get("objective_seeds") or 1)
    if k == 1:
        return train(cfg)
    validate(cfg)  # k outside 1..100 is refused here, before any seed runs
    if int(cfg.seed) + k - 1 > SEED_MAX:
        raise ConfigError(f"seed = {cfg.seed} with objective_seeds = {k}: the job would train "
                          f"seeds up to {int(cfg.seed) + k - 1}; seeds go up to {SEED_MAX}.")
    group = uuid.uuid4().hex[:16]
    link = _trial_link(cfg)
    per_seed: list[dict[str, float]] = []
    runs: list[str] = []
    try:
        for index in range(k):
            seed_cfg = seed_config(cfg, index)
            tags = {TAG_GROUP: group, TAG_INDEX: index, TAG_SEEDS: k}
            with extra_run_tags(tags) as created:  # tagged at creation, whatever ends the run
                try:
                    per_seed.append(train(seed_cfg))
                finally:
                    runs += created
            run_id = created[-1] if created else None
            if link is not None and _trial_stopped(link, per_seed[-1], run_id, seed_cfg):
                break
    except Exception:  # a seed failed: the trial still lists its runs, for the sweeper's tags
        if link is not None:
            with contextlib.suppress(Exception):
                _record_trial(link, [int(cfg.seed) + i for i in range(len(runs))], group, runs,
                              None, None)
        raise
    values = _objective_values(cfg, per_seed)
    stopped = len(per_seed) < k
    summary = None if stopped or values is None else _summary(values)
    if link is not None:
        _record_trial(link, [int(cfg.seed) + i for i in range(len(per_seed))], group, runs,
                      values, summary)
    if summary is not None:
        _record_runs(cfg, runs, summary)
        _print(cfg, values, summary)
    return per_seed[0] if stopped else mean_metrics(per_seed)


def seed_config(cfg: DictConfig, index: int) -> DictConfig:
    """The job's config for its ``index``-th seed: ``seed + index``; seeds after the first do
    not report to the Optuna trial; each seed's checkpoints in ``<job dir>/seed<N>/``."""
    out = copy.deepcopy(cfg)
    seed = int(cfg.seed) + index
    output_dir = HydraContext.current().output_dir
    with open_dict(out):
        out.seed = seed
        for node in (out.get("callbacks") or {}).values():
            if not isinstance(node, Mapping) or not node.get("_target_"):
                continue
            if node["_target_"] == PRUNING and index > 0:
                node.trial = None
            elif (node["_target_"] == CHECKPOINTS and node.get("dirpath") is None
                  and output_dir is not None):
                node.dirpath = str(output_dir / f"seed{seed}" / "checkpoints")
    return out


def mean_metrics(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Every metric all seeds have, averaged (a NaN stays NaN); ``diverged``: any seed."""
    common = set.intersection(*(set(m) for m in per_seed))
    out = {key: math.fsum(m[key] for m in per_seed) / len(per_seed) for key in common}
    if "diverged" in out:
        out["diverged"] = max(m["diverged"] for m in per_seed)
    return out


def _summary(values: list[float]) -> dict[str, float]:
    finite = all(math.isfinite(v) for v in values)
    se = standard_error(values) if finite else float("nan")
    return {"mean": statistics.fmean(values) if finite else float("nan"),
            "se": float("nan") if se is None else se, "n": float(len(values))}


def _objective_values(cfg: DictConfig, per_seed: list[dict[str, float]]) -> list[float] | None:
    name = cfg.get("optimized_metric")
    if not name or any(name not in m for m in per_seed):
        return None  # objective() says which metric was never logged
    return [float(m[name]) for m in per_seed]


# ---- MLflow ----------------------------------------------------------------------------------
def _client(cfg: DictConfig) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(str(cfg.tracking.tracking_uri))


def _record_runs(cfg: DictConfig, runs: list[str], summary: Mapping[str, float]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(name, summary[key], now, 0)
               for name, key in ((METRIC_MEAN, "mean"), (METRIC_SE, "se"), (METRIC_N, "n"))]
    try:
        client = _client(cfg)
        with interrupts.store_write():
            for run_id in runs:
                client.log_batch(run_id, metrics=metrics)
    except Exception as err:  # noqa: BLE001 - the objective stands without them
        log.warning("could not log the seeds' objective to their runs: %s", err)


# ---- Optuna ----------------------------------------------------------------------------------
def _trial_link(cfg: DictConfig) -> dict[str, Any] | None:
    """The ``optuna`` node the sweeper adds to a trial's config (study, trial, storage)."""
    node = cfg.get("optuna")
    if not node or node.get("trial") is None or not node.get("storage"):
        return None
    return {"study": node["study"], "trial": node["trial"], "storage": node["storage"]}


def _trial_stopped(link: Mapping[str, Any], metrics: Mapping[str, float],
                   run_id: str | None, seed_cfg: DictConfig) -> bool:
    """Whether the trial is over after this seed: pruned or diverged (seed 0's pruning
    callback says so on the trial), or a seed diverged (said here, on the trial, for the
    sweeper, which then tells Optuna PRUNED)."""
    from initlab.search.trial import ATTR_DIVERGED, ATTR_PRUNED, load_trial

    with interrupts.store_write():
        trial = load_trial(link)
        attrs = trial.user_attrs
        if ATTR_PRUNED in attrs or ATTR_DIVERGED in attrs:
            return True
        if metrics.get("diverged"):  # seed 0's pruning callback would have said so
            trial.set_user_attr(ATTR_DIVERGED, _diverged_step(seed_cfg, run_id))
            log.info("Optuna trial %s: seed %s diverged, the trial is pruned", link["trial"],
                     seed_cfg.seed)
            return True
    return False


def _diverged_step(cfg: DictConfig, run_id: str | None) -> int:
    if run_id is None:
        return -1
    try:
        return int(_client(cfg).get_run(run_id).data.tags.get("initlab.diverged_step", -1))
    except Exception:  # noqa: BLE001
        return -1


def _record_trial(link: Mapping[str, Any], seeds: list[int], group: str, runs: list[str],
                  values: list[float] | None, summary: Mapping[str, float] | None) -> None:
    from initlab.search import trial as T

    attrs: dict[str, Any] = {T.ATTR_SEED_GROUP: group, T.ATTR_SEED_RUNS: runs,
                             T.ATTR_OBJECTIVE_SEEDS: seeds}
    if values is not None:
        attrs[T.ATTR_OBJECTIVE_VALUES] = values
    if summary is not None:
        attrs[T.ATTR_OBJECTIVE_MEAN] = summary["mean"]
        attrs[T.ATTR_OBJECTIVE_SE] = summary["se"]
    with interrupts.store_write():
        trial = T.load_trial(link)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)


def _print(cfg: DictConfig, values: list[float], summary: Mapping[str, float]) -> None:
    shown = ", ".join(f"{v:.4g}" for v in values)
    text = (f"objective {cfg.optimized_metric} over {len(values)} seeds "
            f"({cfg.seed}..{int(cfg.seed) + len(values) - 1}): mean {summary['mean']:.4g} "
            f"± {summary['se']:.2g} (standard error); per seed {shown}")
    log.info(text)
    print(text, flush=True)
