"""Compare runs from MLflow: S1's figures and a table of final metrics, drawn from the store.

    python -m initlab.compare --sweep-id 2026-11-23/10-00-00      # a multirun
    python -m initlab.compare --experiment s1_histograms          # every finished run in it
    python -m initlab.compare --runs RUN_ID RUN_ID ...            # chosen runs
        [--tracking-uri sqlite:///mlruns/mlflow.db] [--out comparisons/NAME]

Writes into ``--out``: ``curves.png`` (training loss and validation accuracy per init, S1's MNIST
figure), ``histograms.png`` (activation histograms at init, layer x init, S1's histogram
figures), ``depth.png`` (per-layer pre-activation RMS and activation std through depth,
measured and mean-field predicted, one line per init), ``boundaries.png`` (decision boundaries
for 2-D data, S4), ``metrics.csv`` and ``summary.md`` (the table of final metrics grouped by
init family and scale, mean +- std over seeds); then logs the folder as the artifacts of a new
run tagged ``initlab.kind=comparison``, so the MLflow UI shows it too.  A figure whose data no
run has (no training curves in a forward-only study, no 2-D data) is left out and said so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from initlab.histograms import plot_grid  # noqa: E402

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
STATS_ARTIFACT = "diagnostics/init_stats.json"
WEIGHTS_ARTIFACT = "model/final_weights.pt"
TABLE_METRICS = ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss")
_SKIP_KINDS = ("sweep", "comparison")


# ---- naming runs -----------------------------------------------------------------------------
def _value(text: Any) -> Any:
    """An MLflow param (a string) back to a number / bool / None where it is one."""
    if not isinstance(text, str):
        return text
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def init_label(init: Mapping[str, Any], with_scale: bool = True) -> str:
    """``he``, ``normal(std=1)``, ``xavier(distribution=normal) x2``: the family, the options
    that differ from its defaults (a normal's std always), and the scale when not 1."""
    from initlab.inits import INIT_FAMILIES, family_options

    name = str(init.get("name", "?"))
    defaults = family_options(name) if name in INIT_FAMILIES else {}
    shown = []
    for key, raw in init.items():
        value = _value(raw)
        if key in ("name", "scale", "bias") or isinstance(value, Mapping):
            continue
        if key == "std" or (key in defaults and defaults[key] != value):
            shown.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    label = f"{name}({', '.join(shown)})" if shown else name
    scale = _value(init.get("scale", 1.0))
    if with_scale and isinstance(scale, (int, float)) and scale != 1:
        label += f" x{scale:g}"
    return label


def _init_params(run) -> dict[str, Any]:
    return {k[len("init."):]: v for k, v in run.data.params.items()
            if k.startswith("init.") and not k.startswith("init.bias.")}


def labels_for(runs: Sequence) -> dict[str, str]:
    """run id -> label; the activation is added when the runs differ in it."""
    activations = {r.data.params.get("model.activation") for r in runs}
    out = {}
    for run in runs:
        label = init_label(_init_params(run))
        if len(activations) > 1:
            label = f"{run.data.params.get('model.activation')} {label}"
        out[run.info.run_id] = label
    return out


# ---- choosing runs ---------------------------------------------------------------------------
def select_runs(client, experiment: str | None = None, sweep_id: str | None = None,
                run_ids: Sequence[str] | None = None) -> list:
    """Finished job runs (not sweep parents, not comparisons), oldest first."""
    if run_ids:
        runs = [client.get_run(r) for r in run_ids]
    else:
        if experiment is not None:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise SystemExit(f"compare: no MLflow experiment named {experiment!r}")
            ids = [found.experiment_id]
        else:
            ids = [e.experiment_id for e in client.search_experiments()]
        query = f"tags.`initlab.sweep_id` = '{sweep_id}'" if sweep_id else ""
        runs = client.search_runs(ids, filter_string=query, max_results=5000)
        runs = [r for r in runs if r.data.tags.get("initlab.kind") not in _SKIP_KINDS
                and r.info.status == "FINISHED"]
    runs.sort(key=lambda r: r.info.start_time or 0)
    if not runs:
        raise SystemExit("compare: no finished runs matched")
    return runs


def load_record(client, run_id: str) -> dict[str, Any] | None:
    """The run's ``diagnostics/init_stats.json`` (None if it has none)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, STATS_ARTIFACT, tmp)
            return json.loads(Path(local).read_text())
    except Exception:  # no diagnostics in this run (diagnostics=off, older run)
        return None


def _grouped(runs: Sequence, labels: Mapping[str, str]) -> OrderedDict[str, list]:
    groups: OrderedDict[str, list] = OrderedDict()
    for run in runs:
        groups.setdefault(labels[run.info.run_id], []).append(run)
    return groups


def _colors(names: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


# ---- figures ---------------------------------------------------------------------------------
def plot_curves(client, runs: Sequence, labels: Mapping[str, str], path: Path) -> Path | None:
    """Training loss (per logged step) and validation accuracy, one colour per init; every
    seed is drawn (thin), the mean over seeds thick."""
    groups = _grouped(runs, labels)
    colors = _colors(list(groups))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for label, members in groups.items():
        for ax, keys in ((ax_loss, ("train/loss_step", "train/loss")), (ax_acc, ("val/acc",))):
            curves = []
            for run in members:
                for key in keys:
                    points = sorted(client.get_metric_history(run.info.run_id, key),
                                    key=lambda m: (m.step, m.timestamp))
                    if points:
                        curves.append(({m.step: m.value for m in points}, key))
                        break
            if not curves:
                continue
            drawn = True
            for curve, _ in curves:
                steps = sorted(curve)
                ax.plot(steps, [curve[s] for s in steps], color=colors[label], alpha=0.3, lw=0.8)
            common = sorted(set.intersection(*(set(c) for c, _ in curves)))
            mean = [statistics.fmean(c[s] for c, _ in curves) for s in common]
            ax.plot(common, mean, color=colors[label], lw=2,
                    label=f"{label} (n={len(curves)})" if len(curves) > 1 else label)
    if not drawn:
        plt.close(fig)
        return None
    ax_loss.axhline(math.log(10), color="grey", ls=":", lw=1, label="ln 10")
    ax_loss.set(xlabel="training step", ylabel="training loss", title="loss")
    ax_acc.set(xlabel="training step", ylabel="validation accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_histograms(records: Mapping[str, dict], path: Path) -> Path | None:
    rows = [(label, rec["histograms"]) for label, rec in records.items() if rec.get("histograms")]
    return plot_grid(rows, path) if rows else None


def plot_depth(series: Mapping[str, Sequence[dict]], path: Path) -> Path | None:
    """Per init (a list of records, one per seed): pre-activation RMS sqrt(E[h^2]) and
    activation std per layer, measured (solid, mean with the seeds' min-max as error bars)
    and mean-field predicted (dashed)."""
    colors = _colors(list(series))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for label, records in series.items():
        records = [r for r in records if r]
        if not records:
            continue
        names = [layer["name"] for layer in records[0]["layers"]]
        depth = list(range(1, len(names) + 1))
        for ax, stat, transform in ((axes[0], "preact_var", math.sqrt),
                                    (axes[1], "act_std", lambda v: v)):
            per_seed = [[transform(max(layer["stats"][stat], 0.0)) for layer in r["layers"]]
                        for r in records]
            if stat == "act_std":  # the output layer has no activation
                keep = [i for i, layer in enumerate(records[0]["layers"]) if layer["kind"]]
                per_seed = [[row[i] for i in keep] for row in per_seed]
                xs = [depth[i] for i in keep]
            else:
                keep, xs = list(range(len(names))), depth
            mean = [statistics.fmean(col) for col in zip(*per_seed)]
            low = [m - min(col) for m, col in zip(mean, zip(*per_seed))]
            high = [max(col) - m for m, col in zip(mean, zip(*per_seed))]
            ax.errorbar(xs, mean, yerr=[low, high] if len(per_seed) > 1 else None,
                        color=colors[label], marker="o", ms=4, lw=1.5,
                        label=f"{label} measured" + (f" (n={len(per_seed)})" if len(per_seed) > 1 else ""))
            pred = records[0]["layers"]
            if all(layer.get("pred") and stat in layer["pred"] for layer in
                   [pred[i] for i in keep]):
                ax.plot(xs, [transform(pred[i]["pred"][stat]) for i in keep],
                        color=colors[label], ls="--", lw=1.2, label=f"{label} mean-field")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set(title="pre-activation RMS, sqrt(E[h^2])", xlabel="layer", yscale="log")
    axes[1].set(title="activation std (hidden layers)", xlabel="layer", yscale="log")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_boundaries(client, runs: Sequence, labels: Mapping[str, str], path: Path,
                    max_panels: int = 12) -> Path | None:
    """Decision regions of each run's final model on 2-D data, with its training points."""
    import torch
    from omegaconf import OmegaConf

    from initlab.training import build

    two_d = [r for r in runs if r.data.params.get("dataset.in_features") == "2"][:max_panels]
    panels = []
    for run in two_d:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = client.download_artifacts(run.info.run_id, WEIGHTS_ARTIFACT, tmp)
                saved = torch.load(local, map_location="cpu", weights_only=False)
        except Exception:
            continue
        config = OmegaConf.create(saved["config"])
        model = build(config.model)
        model.load_state_dict(saved["state_dict"])
        model.eval()
        data = build(config.dataset)
        data.setup()
        panels.append((run, model, *data.splits["train"]))
    if not panels:
        return None
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (run, model, x, y) in zip(axes.flat, panels):
        lo, hi = x.min(0).values - 0.3, x.max(0).values + 0.3
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200),
                                torch.linspace(lo[1], hi[1], 200), indexing="xy")
        with torch.no_grad():
            out = model(torch.stack([gx.flatten(), gy.flatten()], 1))
        pred = (out.squeeze(-1) > 0).float() if out.shape[-1] == 1 else out.argmax(-1).float()
        ax.contourf(gx.numpy(), gy.numpy(), pred.reshape(gx.shape).numpy(), alpha=0.35,
                    cmap="coolwarm")
        ax.scatter(x[:, 0], x[:, 1], c=y, s=6, cmap="coolwarm", edgecolors="k", linewidths=0.2)
        acc = run.data.metrics.get("test/acc")
        ax.set_title(f"{labels[run.info.run_id]} seed {run.data.params.get('seed')}"
                     + (f"\ntest acc {acc:.2f}" if acc is not None else ""), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- the table -------------------------------------------------------------------------------
def _mean_std(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def metrics_table(runs: Sequence, records: Mapping[str, dict | None]) -> tuple[list[str], list[list[str]]]:
    """One row per (init family and options, scale[, activation]): run count, seeds, and
    mean ± std over them of the final metrics and of the signal ratio at init."""
    activations = {r.data.params.get("model.activation") for r in runs}
    groups: OrderedDict[tuple, list] = OrderedDict()
    for run in runs:
        params = _init_params(run)
        key = (init_label(params, with_scale=False), str(_value(params.get("scale", 1.0))),
               run.data.params.get("model.activation", ""))
        groups.setdefault(key, []).append(run)
    present = [m for m in TABLE_METRICS if any(m in r.data.metrics for r in runs)]
    header = ["init", "scale"] + (["activation"] if len(activations) > 1 else []) + [
        "runs", "seeds", *present, "signal ratio at init"]
    rows = []
    for (label, scale, activation), members in groups.items():
        row = [label, scale] + ([activation] if len(activations) > 1 else [])
        row += [str(len(members)), ",".join(sorted({r.data.params.get("seed", "?") for r in members}))]
        row += [_mean_std([r.data.metrics.get(m) for r in members]) for m in present]
        ratios = [(records.get(r.info.run_id) or {}).get("signal_ratio") for r in members]
        row.append(_mean_std([v for v in ratios if v is not None]))
        rows.append(row)
    return header, rows


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- the command -----------------------------------------------------------------------------
def compare(client, runs: Sequence, out: Path, title: str) -> dict[str, Path]:
    """Draw every figure the runs have data for, write the table and summary; return them."""
    out.mkdir(parents=True, exist_ok=True)
    labels = labels_for(runs)
    records = {r.info.run_id: load_record(client, r.info.run_id) for r in runs}
    by_label: OrderedDict[str, list] = OrderedDict()
    for run in runs:
        by_label.setdefault(labels[run.info.run_id], []).append(records[run.info.run_id])
    first_record = {label: next((r for r in recs if r), None) for label, recs in by_label.items()}
    made: dict[str, Path | None] = {
        "curves": plot_curves(client, runs, labels, out / "curves.png"),
        "histograms": plot_histograms({k: v for k, v in first_record.items() if v},
                                      out / "histograms.png"),
        "depth": plot_depth(by_label, out / "depth.png"),
        "boundaries": plot_boundaries(client, runs, labels, out / "boundaries.png"),
    }
    header, rows = metrics_table(runs, records)
    (out / "metrics.csv").write_text("\n".join(",".join(f'"{c}"' for c in row)
                                               for row in [header, *rows]) + "\n")
    captions = {
        "curves": "Training loss and validation accuracy per init (thin: each seed, thick: mean).",
        "histograms": "Activation histograms at initialization, one row per init, one column "
                      "per hidden layer (first seed).",
        "depth": "Through depth: measured (solid; bars = min-max over seeds) and mean-field "
                 "predicted (dashed).",
        "boundaries": "Decision boundaries of the final models on the 2-D training data.",
    }
    lines = [f"# {title}", "", f"{len(runs)} runs, compared {time.strftime('%Y-%m-%d %H:%M')}.",
             "", "## Final metrics", "", _markdown(header, rows), ""]
    for name, path in made.items():
        if path is not None:
            lines += [f"## {name}", "", captions[name], "", f"![{name}]({path.name})", ""]
        else:
            lines += [f"_{name}: no run has the data for this figure._", ""]
    lines += ["## Runs", "", _markdown(
        ["run", "name", "label", "seed", "status"],
        [[r.info.run_id, r.data.tags.get("mlflow.runName", ""), labels[r.info.run_id],
          r.data.params.get("seed", ""), r.info.status] for r in runs]), ""]
    (out / "summary.md").write_text("\n".join(lines))
    made_paths = {k: v for k, v in made.items() if v is not None}
    made_paths.update(table=out / "metrics.csv", summary=out / "summary.md")
    return made_paths


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


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m initlab.compare", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="every finished run of this MLflow experiment")
    which.add_argument("--sweep-id", help="the runs of one multirun (tag initlab.sweep_id)")
    which.add_argument("--runs", nargs="+", metavar="RUN_ID", help="these runs")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
    parser.add_argument("--out", type=Path, help="output folder (default comparisons/<name>)")
    parser.add_argument("--no-log", action="store_true", help="do not record a comparison run")
    args = parser.parse_args(argv)
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
    made = compare(client, runs, out, title)
    for name, path in made.items():
        print(f"{name}: {path}")
    if not args.no_log:
        run_id = log_comparison(client, runs, out, title, args.sweep_id)
        print(f"MLflow comparison run {run_id} (experiment id {runs[0].info.experiment_id}), "
              f"store {args.tracking_uri}")
    return made


if __name__ == "__main__":
    main(sys.argv[1:])
