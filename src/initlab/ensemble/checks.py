"""What the ensemble engine can train exactly, and the refusal (one paragraph, exit code 2)
of everything else, before any member exists.

Exact means: per member, the same optimizer update as the Lightning path, because the stacked
loss is the sum of the members' mean losses (so each member's gradient is its own) and the
optimizers below update every parameter element by element.  A Trainer option or callback that
couples elements (gradient clipping by norm, accumulation, ReduceLROnPlateau) or needs
Lightning's loop (checkpoints, EMA, early stopping, DDP, profilers) is refused.  The
diagnostics (``diagnostics=...``) and Optuna pruning are reimplemented per member.

Checkpoints are refused rather than imitated: a member's ``last.ckpt`` would have to hold the
Lightning loop and optimizer state that ``train.py ckpt_path=...`` resumes from, and the stacked
optimizer's state is not a Lightning checkpoint; ``callbacks=none`` drops them (the final weights
and logged model are still recorded)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from initlab.ensemble.grouping import task_node
from initlab.errors import ConfigError

OPTIMIZERS = ("torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.RMSprop")
NETS = ("initlab.nets.MLP", "initlab.nets.mlp.MLP")
PRECISIONS = {"32-true": "float32", "32": "float32", "64-true": "float64", "64": "float64"}
# Trainer keys and the values the engine honours (None: any value).
TRAINER: dict[str, Any] = {
    "_target_": None, "name": None, "accelerator": ("cpu", "gpu", "cuda", "auto"), "devices": (1,),
    "strategy": ("auto",), "precision": tuple(PRECISIONS), "max_epochs": None, "max_steps": (-1,),
    "limit_train_batches": (1.0, 1), "limit_val_batches": (1.0, 1), "limit_test_batches": (1.0, 1),
    "val_check_interval": (None,), "check_val_every_n_epoch": (1,), "log_every_n_steps": None,
    "gradient_clip_val": (None, 0, 0.0), "gradient_clip_algorithm": None,
    "accumulate_grad_batches": (1,), "deterministic": None, "fast_dev_run": (False,),
    "overfit_batches": (0.0, 0), "num_sanity_val_steps": None, "profiler": (None,),
    "enable_model_summary": None, "enable_progress_bar": None,
}
# Callbacks the engine reimplements per member (the rest are Lightning-only).
CALLBACKS = ("initlab.search.pruning.OptunaPruning",
             "initlab.diagnostics.callback.InitDiagnostics")
CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
HINT = "run it with the ordinary launcher (drop hydra/launcher=ensemble)"


def _refuse(key: str, value: Any, allowed: str) -> ConfigError:
    shown = "null" if value is None else value
    return ConfigError(f"{key} = {shown} is not allowed with hydra/launcher=ensemble: the "
                       f"stacked engine cannot reproduce it exactly per member; {allowed} is "
                       f"expected, or {HINT}.", key=key, value=value, allowed=allowed)


def check_ensemble(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first option the ensemble engine cannot honour."""
    node = task_node(cfg)
    if node.get("task", "train") != "train":
        raise _refuse("task", node.get("task"), "train")
    if node.get("ckpt_path"):
        raise _refuse("ckpt_path", node["ckpt_path"], "null (no resuming)")
    if int(node.get("objective_seeds", 1) or 1) != 1:
        raise _refuse("objective_seeds", node["objective_seeds"],
                      "1 (sweep the seeds instead: seed=0,1,2 stacks them)")
    loggers = {k: v for k, v in (node.get("logger") or {}).items() if v is not None}
    for name, logger in loggers.items():
        if logger.get("_target_"):
            raise _refuse(f"logger.{name}", logger["_target_"], "logger=mlflow (the member runs)")
    if loggers and not (node.get("tracking") or {}).get("enabled", True):
        raise _refuse("tracking.enabled", False, "true with logger=mlflow (or logger=none)")
    if node["model"].get("_target_") not in NETS:
        raise _refuse("model._target_", node["model"].get("_target_"), "an MLP (initlab.nets.MLP)")
    if node["optimizer"].get("_target_") not in OPTIMIZERS:
        raise _refuse("optimizer._target_", node["optimizer"].get("_target_"),
                      "an elementwise optimizer: " + ", ".join(OPTIMIZERS))
    scheduler = node.get("scheduler") or {}
    if "ReduceLROnPlateau" in str(scheduler.get("_target_", "")):
        raise _refuse("scheduler._target_", scheduler["_target_"],
                      "a schedule of the step or epoch count (step, cosine) or null")
    if scheduler and int(scheduler.get("frequency", 1) or 1) != 1:
        raise _refuse("scheduler.frequency", scheduler["frequency"], "1")
    for key, value in (node.get("trainer") or {}).items():
        allowed = TRAINER.get(key, ())
        if key not in TRAINER or (allowed is not None and value not in allowed):
            shown = ", ".join("null" if a is None else str(a) for a in (allowed or ()))
            raise _refuse(f"trainer.{key}", value, f"one of {shown}" if shown else
                          "no such Trainer option (not supported by the ensemble)")
    for name, cb in (node.get("callbacks") or {}).items():
        if cb is None or not cb.get("_target_"):
            continue
        if cb["_target_"] == CHECKPOINT:
            raise ConfigError(
                f"callbacks.{name} = {CHECKPOINT} is not allowed with hydra/launcher=ensemble: "
                "the stacked engine writes no Lightning checkpoints (last.ckpt / best.ckpt), so "
                "a member could not be resumed with ckpt_path=<run id>; its final weights and "
                "logged model are still recorded. Add callbacks=none to the command "
                "(diagnostics stay on), or " + HINT + ".",
                key=f"callbacks.{name}", value=cb["_target_"], allowed="callbacks=none")
        if cb["_target_"] not in CALLBACKS:
            raise _refuse(f"callbacks.{name}", cb["_target_"],
                          "no Lightning-only callback (callbacks=none; the diagnostics and "
                          "Optuna pruning are reimplemented per member)")
