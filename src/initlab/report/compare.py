"""Compare runs from MLflow: S1's figures and a table of final metrics, drawn from the store.

    python -m initlab.compare --sweep-id 2026-11-23/10-00-00      # a multirun
    python -m initlab.compare --experiment s1_histograms          # every finished run in it
    python -m initlab.compare --runs RUN_ID RUN_ID ...            # chosen runs
        [--tracking-uri sqlite:///mlruns/mlflow.db] [--out comparisons/NAME] [--no-log]

Writes into ``--out``: ``curves.png`` (training loss and validation accuracy per init, S1's MNIST
figure), ``histograms.png`` (activation histograms at init, layer x init, S1's histogram
figures), ``depth.png`` (per-layer pre-activation RMS and activation std through depth,
measured and mean-field predicted, one line per init), ``boundaries.png`` (decision boundaries
for 2-D data, S4), ``metrics.csv`` and ``summary.md`` (the table of final metrics grouped by
init family and scale, mean +- 95% t-interval over seeds); then logs the folder as the artifacts of a new
run tagged ``initlab.kind=comparison``, so the MLflow UI shows it too.  A figure whose data no
run has (no training curves in a forward-only study, no 2-D data) is left out and said so.

The store is read as data only: params as literals, records as JSON, weights as safetensors
tensors; the models for decision boundaries come from the project's own nets, never from a
``_target_`` or a pickle found in a run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from initlab.report import diagnostics_figures
from initlab.report.figures import (plot_boundaries, plot_curves_per_init, plot_depth,
                                    plot_histograms)
from initlab.report.labels import grouped, labels_for, legend_labels
from initlab.report.phase import PHASE_FILE, plot_phase
from initlab.report.query import DEFAULT_URI, load_record, select_runs
from initlab.report.table import metrics_table, write_csv, write_summary
from initlab.tracking.secrets import mask

__all__ = ["compare", "log_comparison", "main"]


def compare(client, runs: Sequence, out: Path, title: str) -> dict[str, Path]:
    """Draw every figure the runs have data for, write the table and summary; return them."""
    out.mkdir(parents=True, exist_ok=True)
    labels = labels_for(runs)
    records = {r.info.run_id: load_record(client, r.info.run_id) for r in runs}
    by_label: OrderedDict[str, list] = OrderedDict()
    for run in runs:
        by_label.setdefault(labels[run.info.run_id], []).append(records[run.info.run_id])
    first_record = {label: next((r for r in recs if r), None) for label, recs in by_label.items()}
    legend = legend_labels(grouped(runs, labels))  # the label with the recorded sigma_w^2
    figures: dict[str, Path | None] = {
        "curves": plot_curves_per_init(client, runs, labels, out / "curves.png"),
        "histograms": plot_histograms({k: v for k, v in first_record.items() if v},
                                      out / "histograms.png", legend),
        "depth": plot_depth(by_label, out / "depth.png", legend),
        "boundaries": plot_boundaries(client, runs, labels, out / "boundaries.png"),
    }
    table = metrics_table(runs, records)
    made = {k: v for k, v in figures.items() if v is not None}
    made["table"] = write_csv(table, out / "metrics.csv")
    made["summary"] = write_summary(out / "summary.md", title, runs, labels, table, figures)
    # The backward / Jacobian records redrawn across runs, and the sigma_w^2 x depth phase
    # diagram, when the runs have them.
    extra = {**diagnostics_figures.draw(by_label, out), "phase": plot_phase(runs, out / PHASE_FILE)}
    diagnostics_figures.append_summary(made["summary"], extra)
    made.update({k: v for k, v in extra.items() if v is not None})
    return made


def log_comparison(client, runs: Sequence, out: Path, title: str,
                   sweep_id: str | None = None) -> str:
    """A new MLflow run (in the first run's experiment) holding the folder as artifacts."""
    tags = {"initlab.kind": "comparison", "mlflow.runName": title,
            "initlab.compared_runs": ",".join(r.info.run_id for r in runs)[:4900]}
    if sweep_id:
        tags["initlab.compared_sweep"] = sweep_id
    run = client.create_run(runs[0].info.experiment_id, tags=tags, run_name=title)
    try:
        client.log_artifacts(run.info.run_id, str(out))
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def drawn_from(client, runs: Sequence, what: str, tracking_uri: str) -> str:
    """What a comparison draws, said before its files: the selection (sweep id, experiment or
    run list), how many runs, their experiment(s) and inits, and the store."""
    names = []
    for experiment_id in dict.fromkeys(r.info.experiment_id for r in runs):
        try:
            names.append(f"'{client.get_experiment(experiment_id).name}'")
        except Exception:  # noqa: BLE001 - the id says enough
            names.append(f"id {experiment_id}")
    inits = "; ".join(f"{label}: {len(members)}" for label, members
                      in grouped(runs, labels_for(runs)).items())
    return (f"compare: {what}: {len(runs)} finished run(s) in experiment "
            f"{', '.join(names)}, store {mask(tracking_uri)}\n  runs per init: {inits}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m initlab.compare",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="every finished run of this MLflow experiment")
    which.add_argument("--sweep-id", help="the runs of one multirun (tag initlab.sweep_id)")
    which.add_argument("--runs", nargs="+", metavar="RUN_ID", help="these runs")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
    parser.add_argument("--out", type=Path, help="output folder (default comparisons/<name>)")
    parser.add_argument("--no-log", action="store_true", help="do not record a comparison run")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args = parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(args.tracking_uri)
    runs = select_runs(client, args.experiment, args.sweep_id, args.runs)
    what = (f"sweep {args.sweep_id}" if args.sweep_id else f"experiment {args.experiment}"
            if args.experiment else f"{len(runs)} runs")
    title = f"comparison of {what}"
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    out = args.out or Path("comparisons") / (
        (args.sweep_id or args.experiment or "runs").replace("/", "_") + f"-{stamp}")
    print(drawn_from(client, runs, what, args.tracking_uri), flush=True)
    made = compare(client, runs, out, title)
    for name, path in made.items():
        print(f"{name}: {path}")
    if not args.no_log:
        run_id = log_comparison(client, runs, out, title, args.sweep_id)
        print(f"MLflow comparison run {run_id} (experiment id {runs[0].info.experiment_id}), "
              f"store {mask(args.tracking_uri)}")
    return made


if __name__ == "__main__":
    main(sys.argv[1:])
