"""``evaluate(cfg)``: a trained net on a data set's split, recorded as a new MLflow run.

The source is ``ckpt_path``: a Lightning checkpoint file (its config is the ``config.yaml`` its
job wrote beside ``checkpoints/``, or Hydra's ``.hydra/config.yaml``), or an MLflow run id (its
``config.yaml`` and ``weights/final_weights.safetensors`` artifacts).  Only tensors and plain values
are read: the weights with safetensors or ``torch.load(weights_only=True)``, the net rebuilt
from ``initlab.nets.NETS`` (``report.rebuild``), the data from ``initlab.data.loaders``; no
``_target_`` of a recorded config is instantiated.  Everything is resolved and checked (the
source, the net against its weights, the data set and its split) before the run is created, so
bad input leaves no run.  The run is tagged ``initlab.evaluates=<run id or file>`` and takes the
source run's logged model (``runs:/<id>/model``) as its input.
"""

from __future__ import annotations

import inspect
import logging
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from initlab.errors import ConfigError

log = logging.getLogger(__name__)
SPLITS = ("test", "val", "train")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
TAG_EVALUATES = "initlab.evaluates"
TAG_EVALUATES_MODEL = "initlab.evaluates_model"
CONFIG_ARTIFACT = "config.yaml"


@dataclass
class Source:
    """What is evaluated: its weights (tensors), its recorded config (plain values), where it
    came from, and the source run's logged model (an id, or None)."""

    label: str
    weights: dict
    recorded: dict[str, Any]
    run_id: str | None = None
    model_id: str | None = None


def _refuse(message: str, value: Any = None, key: str = "ckpt_path") -> ConfigError:
    return ConfigError(message, key=key, value=value)


def _literal(value: Any) -> Any:
    """A recorded value as plain data: OmegaConf never resolves a ``${...}`` found in a store."""
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value.replace("${", "\\${") if isinstance(value, str) else value


# ---- the source ------------------------------------------------------------------------------
def _from_file(path: Path) -> Source:
    from initlab.tracking.models import checkpoint_weights

    try:
        weights = checkpoint_weights(path)
    except Exception as err:  # not a zip/pickle of tensors, a foreign object, no state_dict
        raise _refuse(f"ckpt_path = {str(path)!r} is not a Lightning checkpoint of an initlab net "
                      f"({type(err).__name__}); give a .ckpt file a training job wrote, or an "
                      f"MLflow run id", str(path))
    if not weights:
        raise _refuse(f"ckpt_path = {str(path)!r} holds no net weights (no 'model.*' tensors)",
                      str(path))
    job = path.resolve().parent.parent  # <job output>/checkpoints/<file>.ckpt
    for candidate in (job / CONFIG_ARTIFACT, path.parent / CONFIG_ARTIFACT,
                      job / ".hydra" / CONFIG_ARTIFACT):
        if candidate.is_file():  # the user's own job folder: Hydra's interpolations resolve
            recorded = OmegaConf.to_container(OmegaConf.load(candidate), resolve=True)
            return Source(str(path.resolve()), weights, recorded)
    raise _refuse(f"ckpt_path = {str(path)!r}: no config.yaml of its job next to it (looked in "
                  f"{job} and {job / '.hydra'}); give the MLflow run id instead", str(path))


def _store_exists(uri: str) -> bool:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).is_file()
    return True


def _from_run(run_id: str, tracking_uri: str) -> Source:
    from mlflow.tracking import MlflowClient

    from initlab.tracking.artifacts import WEIGHTS_ARTIFACT, load_weights
    from initlab.tracking.models import FINAL_MODEL, quiet
    from initlab.tracking.secrets import mask

    if not _store_exists(tracking_uri):
        raise _refuse(f"ckpt_path = {run_id!r}: there is no MLflow store at "
                      f"{mask(tracking_uri)} (tracking.tracking_uri)", run_id)
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception:
        raise _refuse(f"ckpt_path = {run_id!r} is not a run of the MLflow store "
                      f"{mask(tracking_uri)}; give one of its run ids or a .ckpt file", run_id)
    with tempfile.TemporaryDirectory(prefix="initlab-eval-") as tmp, quiet():
        try:
            config = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
            weights = load_weights(client.download_artifacts(run_id, WEIGHTS_ARTIFACT, tmp))
        except Exception as err:
            raise _refuse(f"ckpt_path = {run_id!r}: the run has no readable {CONFIG_ARTIFACT} and "
                          f"{WEIGHTS_ARTIFACT} ({type(err).__name__}); was it a training run that "
                          f"finished?", run_id)
        recorded = _literal(yaml.safe_load(Path(config).read_text()) or {})
    model_id = None
    try:
        found = client.search_logged_models([run.info.experiment_id],
                                            filter_string=f"name = '{FINAL_MODEL}'")
        model_id = next((m.model_id for m in found if m.source_run_id == run_id), None)
    except Exception as err:  # noqa: BLE001 - a store without logged models: no link
        log.debug("no logged model for run %s: %s", run_id, err)
    return Source(run_id, weights, recorded, run_id=run_id, model_id=model_id)


def resolve_source(cfg: DictConfig) -> Source:
    text = cfg.get("ckpt_path")
    if not text:
        raise _refuse("ckpt_path is missing: python eval.py ckpt_path=<file.ckpt or MLflow run "
                      "id> [split=test|val|train] [dataset=...]", None)
    text = str(text)
    if Path(text).is_file():
        return _from_file(Path(text))
    if not RUN_ID.match(text):
        raise _refuse(f"ckpt_path = {text!r} is neither a checkpoint file nor an MLflow run id "
                      f"(32 hex digits)", text)
    return _from_run(text, str(cfg.tracking.tracking_uri))  # read even with tracking=none


# ---- the net and the data --------------------------------------------------------------------
def build_net(source: Source):
    from initlab.report.rebuild import Unusable, model_class, model_kwargs
    from initlab.tracking.models import build_net as from_spec

    params = source.recorded.get("model") or {}
    try:
        cls = model_class(params)
        spec = {"class": cls.__name__, "kwargs": model_kwargs(cls, params)}
        return from_spec(spec, source.weights)
    except (Unusable, ValueError, RuntimeError, TypeError) as err:
        raise _refuse(f"ckpt_path = {source.label!r}: its recorded model cannot take its weights "
                      f"({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                      source.label)


def dataset_node(cfg: DictConfig, source: Source) -> dict[str, Any]:
    """The data set to evaluate on: ``dataset=...`` given to eval.py, else the recorded one."""
    if cfg.get("dataset") is not None:
        return OmegaConf.to_container(cfg.dataset, resolve=True)
    node = source.recorded.get("dataset")
    if not isinstance(node, dict):
        raise _refuse(f"ckpt_path = {source.label!r}: its config records no data set; give "
                      f"dataset=<name>", source.label)
    return OmegaConf.to_container(OmegaConf.create(node), resolve=True)


def build_data(node: dict[str, Any], split: str, net):
    """The data set's splits, from the project's loaders and the node's plain values."""
    from initlab.data import loaders
    from initlab.engine.datamodule import TensorDataModule
    from initlab.nets import check_fits_data

    name = node.get("name")
    if name not in loaders.LOADERS:
        raise _refuse(f"dataset.name = {name!r} is not one of the project's data sets "
                      f"({', '.join(sorted(loaders.LOADERS))})", name, "dataset.name")
    accepted = inspect.signature(TensorDataModule.__init__).parameters
    datamodule = TensorDataModule(**{k: v for k, v in node.items()
                                     if k in accepted and k != "self"})
    datamodule.setup()
    if len(datamodule.splits[split][0]) == 0:
        sizes = {k: len(v[0]) for k, v in datamodule.splits.items()}
        raise ConfigError(f"split = {split!r}: data set {name!r} has no {split} samples (its "
                          f"splits: {sizes}); choose a split with samples",
                          key="split", value=split, allowed=", ".join(SPLITS))
    check_fits_data(net, datamodule.shape, datamodule.num_classes, str(name))
    return datamodule


# ---- the job ---------------------------------------------------------------------------------
def _run_config(cfg: DictConfig, source: Source, node: dict[str, Any]) -> DictConfig:
    """The eval run's config: the source's recorded config (its params) with the data set, the
    split, the source and where to record."""
    recorded = {k: v for k, v in source.recorded.items() if k not in ("hydra", "tracking")}
    run_cfg = OmegaConf.create(_literal(recorded))
    for key, value in (("dataset", _literal(node)), ("split", cfg.split),
                       ("ckpt_path", source.label)):
        OmegaConf.update(run_cfg, key, value, force_add=True, merge=False)
    OmegaConf.update(run_cfg, "tracking", cfg.tracking, force_add=True, merge=False)
    return run_cfg


def _evaluate(trainer, module, datamodule, split: str) -> dict[str, float]:
    """Loss and accuracy on ``split`` with ``trainer.validate`` (val) or ``trainer.test`` (test,
    and train served as the test split)."""
    if split == "val":
        trainer.validate(module, datamodule=datamodule, verbose=False)
    else:
        if split == "train":
            datamodule.splits = {**datamodule.splits, "test": datamodule.splits["train"]}
        trainer.test(module, datamodule=datamodule, verbose=False)
    stage = "val" if split == "val" else "test"
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {f"{split}/{stat}": metrics[f"{stage}/{stat}"] for stat in ("acc", "loss")}


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.split``; print and record the result."""
    from mlflow.entities import LoggedModelInput, Metric

    from initlab.engine.fit import make_trainer
    from initlab.engine.module import ClassifierModule
    from initlab.jobs.train import device_of
    from initlab.tracking.context import HydraContext
    from initlab.tracking.datasets import digest, log_datasets
    from initlab.tracking.record import run_name
    from initlab.tracking.run import tracked_run

    split = str(cfg.get("split", "test"))
    if split not in SPLITS:
        raise ConfigError(f"split = {split!r} is not a split; allowed: {', '.join(SPLITS)}",
                          key="split", value=split, allowed=", ".join(SPLITS))
    source = resolve_source(cfg)
    net = build_net(source)
    node = dataset_node(cfg, source)
    datamodule = build_data(node, split, net)
    run_cfg = _run_config(cfg, source, node)
    out = HydraContext.current().output_dir or Path(tempfile.mkdtemp(prefix="initlab-eval-"))
    trainer = make_trainer(cfg, out, None)
    module = ClassifierModule(net, optimizer=None)
    if not cfg.tracking.get("enabled", True):
        metrics = _evaluate(trainer, module, datamodule, split)
        _print(source, split, metrics, None)
        return metrics
    try:  # the source run's name: what was trained
        name = f"eval-{run_name(run_cfg, swept=(), overrides=())}-{split}"
    except Exception:  # noqa: BLE001 - a config recorded by an older version: a plain name
        name = f"eval-{node.get('name')}-{split}"
    with tracked_run(run_cfg, device_of(cfg)) as run:
        for key, value in (("mlflow.runName", name), ("mlflow.source.name", "eval.py"),
                           (TAG_EVALUATES, source.label), ("initlab.kind", "evaluation")):
            run.set_tag(key, value)
        if source.model_id:
            run.set_tag(TAG_EVALUATES_MODEL, source.model_id)
            run.client.log_inputs(run.run_id, models=[LoggedModelInput(source.model_id)])
        log_datasets(run, str(node.get("name")), datamodule, contexts=(split,))
        metrics = _evaluate(trainer, module, datamodule, split)
        now, data = int(time.time() * 1000), digest(*datamodule.splits[split])
        run.client.log_batch(run.run_id, metrics=[
            Metric(k, v, now, 0, model_id=source.model_id, dataset_name=str(node.get("name")),
                   dataset_digest=data) for k, v in metrics.items()])
    _print(source, split, metrics, run)
    return metrics


def _print(source: Source, split: str, metrics: dict[str, float], run) -> None:
    from initlab.tracking.links import open_hint, run_url

    lines = [f"{source.label}: {split} accuracy {metrics[f'{split}/acc']:.4f}, "
             f"{split} loss {metrics[f'{split}/loss']:.4f}"]
    if run is not None:
        lines += [f"MLflow run {run.run_id} (evaluation) in experiment '{run.experiment}'",
                  open_hint(run.tracking_uri, run_url(run.tracking_uri, run.experiment_id,
                                                      run.run_id))]
    text = "\n".join(lines)
    log.info(text)
    print(text, flush=True)
