"""What a study leaves behind: ``optimization_results.yaml`` in the sweep dir (the official
plugin's file, plus the study's name, storage and trial counts), Optuna's plots, and in MLflow
the parent run's summary (best params and value, plots) and each trial's run tagged with its
trial number, state and value.

The MLflow parent run is the one ``initlab.tracking.sweep.SweepParentRun`` opened for this
multirun (``<sweep dir>/mlflow_parent_run.json``), in the sweep config's ``tracking.tracking_uri``;
without that file MLflow is left alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from initlab.search.trial import (ATTR_MLFLOW_RUN, ATTR_OBJECTIVE_SE, ATTR_OBJECTIVE_VALUES,
                                  ATTR_SEED_RUNS)
from initlab.tracking.store import PARENT_RUN_FILE, read_parent_run

from . import _plots, _study

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"


class Reporter:
    """``tracking_uri``: the sweep config's MLflow store (the parent-run file names the store
    only with its password masked); ``metric_name``: the objective's metric for the plots
    (``optimized_metric``; else read from the first finished trial's config)."""

    def __init__(self, sweep_dir: Path, tracking_uri: str | None,
                 metric_name: str | None = None) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.metric_name = metric_name
        self.parent: dict[str, str] | None = None
        self.client = None
        self.study_name = ""
        with contextlib.suppress(Exception):
            parent = read_parent_run(self.sweep_dir)
            uri = tracking_uri or (parent or {}).get("tracking_uri")
            if parent is not None and uri:
                from mlflow.tracking import MlflowClient

                self.client = MlflowClient(uri)
                self.parent = parent
        if self.parent is None and (self.sweep_dir / PARENT_RUN_FILE).exists():
            log.warning("MLflow: cannot reach the sweep's parent run; trials are not reported there")

    # ---- MLflow --------------------------------------------------------------------------
    def _safely(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        if self.client is None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking trouble never stops a study
            log.warning("MLflow: could not %s: %s", what, err)
            return None

    def discard_parent_run(self) -> None:
        """The search was refused before any trial: leave no empty parent run behind."""
        if self.parent is not None:
            self._safely("delete the parent run", self.client.delete_run, self.parent["run_id"])
            (self.sweep_dir / PARENT_RUN_FILE).unlink(missing_ok=True)

    def start(self, study: optuna.Study, storage: str, n_trials: int) -> None:
        self.study_name = study.study_name
        if self.parent is None:
            return
        tags = {"optuna.study_name": study.study_name, "optuna.storage": storage,
                "optuna.n_trials": str(n_trials)}
        for key, value in tags.items():
            self._safely("tag the parent run", self.client.set_tag, self.parent["run_id"], key, value)

    def _child_run(self, frozen: FrozenTrial, ret: Any) -> str | None:
        run_id = frozen.user_attrs.get(ATTR_MLFLOW_RUN)
        if run_id or self.parent is None:
            return run_id
        output_dir = None
        with contextlib.suppress(Exception):
            output_dir = str(ret.hydra_cfg.hydra.runtime.output_dir)
        if not output_dir:
            return None
        runs = self._safely("find the trial's run", self.client.search_runs,
                            [self.parent["experiment_id"]],
                            f"tags.`initlab.output_dir` = '{output_dir}'", max_results=1)
        return runs[0].info.run_id if runs else None

    def trial_done(self, frozen: FrozenTrial, ret: Any, why: str) -> None:
        if self.metric_name is None:  # the job's config (Hydra's JobReturn.cfg) names it
            with contextlib.suppress(Exception):
                self.metric_name = OmegaConf.select(ret.cfg, "optimized_metric", default=None)
        seed_runs = frozen.user_attrs.get(ATTR_SEED_RUNS)  # objective_seeds > 1: every seed's run
        for run_id in seed_runs or [self._child_run(frozen, ret)]:
            if run_id is not None and self.client is not None:
                self._tag_trial_run(frozen, run_id, why)

    def _tag_trial_run(self, frozen: FrozenTrial, run_id: str, why: str) -> None:
        tags = {"optuna.study_name": self.study_name,
                "optuna.trial_number": str(frozen.number), "optuna.state": frozen.state.name}
        if why:
            tags["optuna.reason"] = why[:500]
        if frozen.state != TrialState.COMPLETE:
            run = self._safely("read the trial's run", self.client.get_run, run_id)
            if run is not None:
                tags["mlflow.runName"] = f"{run.info.run_name} [{frozen.state.name}]"
        for key, value in tags.items():
            self._safely("tag the trial's run", self.client.set_tag, run_id, key, value)
        self._safely("log the trial number", self.client.log_metric, run_id, "optuna.trial_number",
                     frozen.number)
        if frozen.values and len(frozen.values) == 1:
            self._safely("log the trial value", self.client.log_metric, run_id, "optuna.value",
                         frozen.values[0])

    # ---- the end -------------------------------------------------------------------------
    def finish(self, study: optuna.Study, storage: str, n_trials: int, plots: bool,
               interrupted: bool) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False)
        states = Counter(t.state.name for t in trials)
        counted = sum(_study.counts(t) for t in trials)
        results: dict[str, Any] = {"name": "optuna"}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(study.directions) == 1 and complete:
            best = study.best_trial
            results.update(best_params=dict(best.params), best_value=best.value,
                           best_trial=best.number)
            if ATTR_OBJECTIVE_SE in best.user_attrs:  # the mean of several seeds
                results.update(best_value_se=best.user_attrs[ATTR_OBJECTIVE_SE],
                               best_value_seeds=len(best.user_attrs[ATTR_OBJECTIVE_VALUES]))
        elif complete:
            results["solutions"] = [{"params": dict(t.params), "values": list(t.values),
                                     "trial": t.number} for t in study.best_trials]
        results.update(study_name=study.study_name, storage=storage, n_trials=n_trials,
                       trials_done=counted, states=dict(states),
                       directions=[d.name.lower() for d in study.directions])
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        results_file = self.sweep_dir / RESULTS_FILE
        OmegaConf.save(OmegaConf.create(results), results_file)
        figures = self._plots(study) if plots and complete else []
        self._log_parent(results, [results_file, *figures, *self._table(study)])
        self._print(results, interrupted)
        return [results]

    def _table(self, study: optuna.Study) -> list[Path]:
        path = self.sweep_dir / "optuna_trials.csv"
        try:
            study.trials_dataframe().to_csv(path, index=False)
        except Exception as err:  # noqa: BLE001 - pandas missing, or no trials
            log.debug("no trials table: %s", err)
            return []
        return [path]

    def _plots(self, study: optuna.Study) -> list[Path]:
        return _plots.write_plots(study, self.sweep_dir / "optuna_plots", self.metric_name)

    def _log_parent(self, results: dict[str, Any], files: list[Path]) -> None:
        if self.parent is None:
            return
        run_id = self.parent["run_id"]
        from mlflow.entities import Metric, Param

        metrics = {"optuna.trials_done": results["trials_done"]}
        metrics.update({f"optuna.trials_{k.lower()}": v for k, v in results["states"].items()})
        if "best_value" in results:
            metrics["best_value"] = results["best_value"]
            self._safely("tag the best trial", self.client.set_tag, run_id, "optuna.best_trial",
                         str(results["best_trial"]))
        self._safely("log the study's metrics", self.client.log_batch, run_id,
                     metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
        logged = {p for p in self._safely("read the parent run", lambda: self.client.get_run(run_id)
                                          .data.params) or {}}
        params = [Param(f"best.{k}", str(v)) for k, v in results.get("best_params", {}).items()
                  if f"best.{k}" not in logged]
        if params:
            self._safely("log the best params", self.client.log_batch, run_id, params=params)
        for path in files:
            folder = "optuna" if path.parent == self.sweep_dir else "optuna/plots"
            self._safely(f"log {path.name}", self.client.log_artifact, run_id, str(path), folder)

    @staticmethod
    def _print(results: dict[str, Any], interrupted: bool) -> None:
        states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(results["states"].items()))
        head = (f"Optuna study '{results['study_name']}' ({results['storage']}): "
                f"{results['trials_done']} of {results['n_trials']} trials done [{states}]"
                + (" - INTERRUPTED, re-run the same command to finish it" if interrupted else ""))
        lines = [head]
        if "best_value" in results:
            params = " ".join(f"{k}={v}" for k, v in results["best_params"].items())
            spread = (f" ± {results['best_value_se']:.2g} (standard error over "
                      f"{results['best_value_seeds']} seeds)" if "best_value_se" in results else "")
            lines.append(f"Best trial {results['best_trial']}: value {results['best_value']:.6g}"
                         f"{spread}  {params}")
        for solution in results.get("solutions", []):
            lines.append(f"Pareto trial {solution['trial']}: values {solution['values']}  "
                         f"{solution['params']}")
        log.info("\n".join(lines))
