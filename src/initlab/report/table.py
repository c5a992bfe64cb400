"""The comparison's words: the table of final metrics (grouped by init family and scale, mean
± 95% confidence interval over seeds) as ``metrics.csv``, and ``summary.md`` around it and the
figures."""

from __future__ import annotations

import csv
import io
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

from initlab.inits.labels import init_label, plain_value
from initlab.report.aggregate import mean_ci
from initlab.report.labels import activations, init_params

TABLE_METRICS = ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss")
CAPTIONS = {
    "curves": "Training loss and validation accuracy per init (thin: each seed, thick: mean).",
    "histograms": "Activation histograms at initialization, one row per init, one column "
                  "per hidden layer (first seed).",
    "depth": "Through depth: measured (solid; bars = min-max over seeds) and mean-field "
             "predicted (dashed).",
    "boundaries": "Decision boundaries of the final models on the 2-D training data.",
}

TABLE_NOTE = ("Each cell: the mean over the row's runs ± the half-width of its 95% confidence "
              "interval (Student's t with n-1 degrees of freedom, n = runs; `(n=m)` where only "
              "m runs have the metric); one run alone: its value, no interval.")

Table = tuple[list[str], list[list[str]]]


def metrics_table(runs: Sequence, records: Mapping[str, dict | None]) -> Table:
    """One row per (init family and options, scale[, activation]): run count n, seeds, and
    mean ± 95% CI over them (``TABLE_NOTE``) of the final metrics and of the signal ratio at
    init."""
    several = len(activations(runs)) > 1
    groups: OrderedDict[tuple, list] = OrderedDict()
    for run in runs:
        params = init_params(run)
        key = (init_label(params, with_scale=False), str(plain_value(params.get("scale", 1.0))),
               run.data.params.get("model.activation", ""))
        groups.setdefault(key, []).append(run)
    present = [m for m in TABLE_METRICS if any(m in r.data.metrics for r in runs)]
    header = ["init", "scale"] + (["activation"] if several else []) + [
        "runs", "seeds", *present, "signal ratio at init"]
    rows = []
    for (label, scale, activation), members in groups.items():
        row = [label, scale] + ([activation] if several else [])
        row += [str(len(members)), ",".join(sorted({r.data.params.get("seed", "?") for r in members}))]
        row += [mean_ci([r.data.metrics.get(m) for r in members], len(members)) for m in present]
        ratios = [(records.get(r.info.run_id) or {}).get("signal_ratio") for r in members]
        row.append(mean_ci(ratios, len(members)))
        rows.append(row)
    return header, rows


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(table: Table, path: Path) -> Path:
    text = io.StringIO()
    header, rows = table
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([header, *rows])
    path.write_text(text.getvalue())
    return path


def write_summary(path: Path, title: str, runs: Sequence, labels: Mapping[str, str],
                  table: Table, figures: Mapping[str, Path | None]) -> Path:
    """The table, each figure with its caption (or a line saying no run has its data), and
    the list of runs compared."""
    lines = [f"# {title}", "", f"{len(runs)} runs, compared {time.strftime('%Y-%m-%d %H:%M')}.",
             "", "## Final metrics", "", TABLE_NOTE, "", markdown(*table), ""]
    for name, figure in figures.items():
        if figure is not None:
            lines += [f"## {name}", "", CAPTIONS[name], "", f"![{name}]({figure.name})", ""]
        else:
            lines += [f"_{name}: no run has the data for this figure._", ""]
    lines += ["## Runs", "", markdown(
        ["run", "name", "label", "seed", "status"],
        [[r.info.run_id, r.data.tags.get("mlflow.runName", ""), labels[r.info.run_id],
          r.data.params.get("seed", ""), r.info.status] for r in runs]), ""]
    path.write_text("\n".join(lines))
    return path
