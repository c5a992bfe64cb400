"""Figures that tell the truth, checked on the matplotlib objects (axis scales, labels, legend
texts, reference lines), not on pixels: every saved figure is caught at ``Figure.savefig``.

The runs are real runs in a real SQLite MLflow store (params, step metrics, the ``init/sigma_w2``
metric a job records), with synthetic values: no training needed to draw them."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import optuna
import pytest
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from hydra_plugins.initlab_optuna_sweeper._plots import continuous_params, write_plots
from initlab.diagnostics.histograms import plot_grid, plot_row
from initlab.inits.labels import SIGMA_W2, naming_notes
from initlab.report.compare import main as compare_main
from initlab.report.curves import log_axis, plot_curves
from initlab.report.figures import plot_curves_per_init, plot_depth, plot_histograms
from initlab.report.labels import grouped, labels_for, legend_labels

SWEEP = "2026-12-02/10-00-00"


@pytest.fixture
def drawn(monkeypatch) -> dict[str, Figure]:
    """file name -> the Figure saved under it (kept after pyplot closes it)."""
    figures: dict[str, Figure] = {}
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        figures[Path(fname).name] = self
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def _run(client, experiment_id, init: dict, seed: int, sigma_w2: float, losses, accs,
         classes: int = 2, hidden: str = "[10, 5]") -> None:
    run = client.create_run(experiment_id, tags={"initlab.sweep_id": SWEEP})
    rid = run.info.run_id
    params = {**{f"init.{k}": str(v) for k, v in init.items()}, "seed": str(seed),
              "model.activation": "relu", "model.name": "mlp", "model.hidden": hidden,
              "dataset.num_classes": str(classes)}
    for key, value in params.items():
        client.log_param(rid, key, value)
    client.log_metric(rid, "init/sigma_w2", sigma_w2, step=0)
    for step, loss in enumerate(losses):
        client.log_metric(rid, "train/loss_step", loss, step=10 * (step + 1))
    for step, acc in enumerate(accs):
        client.log_metric(rid, "val/acc", acc, step=50 * (step + 1))
    client.set_terminated(rid, "FINISHED")


@pytest.fixture(scope="module")
def s4_store(tmp_path_factory) -> tuple[str, MlflowClient, list]:
    """S4's complaint in a store: N(0, 1) x 10 runs starting near 100, He runs near ln 2."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("s4_circles", artifact_location=str(root / "art"))
    for seed in (0, 1):
        _run(client, experiment_id, {"name": "random", "factor": 10.0, "scale": 1.0}, seed,
             420.0 + seed, [100.0, 20.0, 3.0, 0.9, 0.7], [0.7, 0.8])
        _run(client, experiment_id, {"name": "he", "scale": 1.0}, seed, 2.0 - 0.1 * seed,
             [0.70, 0.69, 0.68, 0.67, 0.66], [0.55, 0.6])
    runs = sorted(client.search_runs([experiment_id]), key=lambda r: r.info.start_time)
    return uri, client, runs


def _legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_log_axis_only_when_the_values_span_decades():
    assert log_axis([100.0, 0.7])            # > 2 decades
    assert not log_axis([2.3, 0.3])          # < 1 decade
    assert not log_axis([0.0, 0.0, float("nan")])


def test_compare_curves_log_loss_chance_ln2_and_sigma_w2_legends(s4_store, drawn, tmp_path):
    _, client, runs = s4_store
    labels = labels_for(runs)
    assert plot_curves_per_init(client, runs, labels, tmp_path / "curves.png")
    fig = drawn["curves.png"]
    loss, acc = fig.axes[:2]
    assert loss.get_yscale() == "log" and "log scale" in loss.get_ylabel()
    chance = [line for line in loss.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(math.log(2))
    assert "ln 2" in chance[0].get_label()
    texts = _legend_texts(loss)
    assert any(t.startswith(f"random [{SIGMA_W2}=420") for t in texts), texts
    assert any(t.startswith(f"he [{SIGMA_W2}=1.95") for t in texts), texts
    assert acc.get_yscale() == "linear"
    footnote = "\n".join(t.get_text() for t in fig.texts)
    assert "fan_in x Var(W)" in footnote and "random = N(0, 1) x factor" in footnote


def test_per_run_curves_linear_when_flat_with_the_runs_own_chance_line(drawn, tmp_path):
    history = {"train/loss": [(50, 2.1), (100, 0.9)], "val/loss": [(50, 1.9), (100, 1.0)],
               "train/loss_step": [(49, 2.2)], "val/acc": [(50, 0.5), (100, 0.7)]}
    plot_curves(history, "lecun-seed0-mlp-digits", tmp_path / "curves.png", num_classes=10)
    loss = drawn["curves.png"].axes[0]
    assert loss.get_yscale() == "linear"
    chance = [line for line in loss.get_lines() if line.get_label().startswith("chance")]
    assert chance[0].get_ydata()[0] == pytest.approx(math.log(10))
    steps = [line for line in loss.get_lines() if line.get_label() == "train (steps)"]
    assert steps[0].get_marker() == "o"  # a single point is still seen
    assert any("Xavier" in t.get_text() for t in drawn["curves.png"].texts)  # lecun's note
    plot_curves(history, "no K", tmp_path / "bare.png")
    assert not [line for line in drawn["bare.png"].axes[0].get_lines()
                if line.get_label().startswith("chance")]


def _record(values: list[float], kinds: list[str | None]) -> dict:
    layers = [{"name": f"layer{i + 1}", "kind": kind,
               "stats": {"preact_var": v * v, "act_std": v / 2},
               "pred": {"preact_var": v * v, "act_std": v / 2}}
              for i, (v, kind) in enumerate(zip(values, kinds))]
    return {"layers": layers, "histograms": [
        {"layer": layer["name"], "kind": "relu", "edges": [0.0, 0.5, 1.0], "counts": [3, 1],
         "zeros": 4, "total": 8} for layer in layers if layer["kind"]]}


def test_depth_names_layers_one_entry_per_init_and_keeps_zeros_said(drawn, tmp_path):
    kinds = ["relu", "relu", None]
    series = {"random": [_record([10.0, 300.0, 9000.0], kinds)] * 2,
              "he": [_record([1.0, 1.1, 1.0], kinds)] * 2,
              "zeros": [_record([0.0, 0.0, 0.0], kinds)]}
    legend = {"random": f"random [{SIGMA_W2}=420]", "he": "he", "zeros": "zeros"}
    assert plot_depth(series, tmp_path / "depth.png", legend)
    fig = drawn["depth.png"]
    pre, act, key = fig.axes
    assert pre.get_yscale() == "log" and act.get_yscale() == "log"
    assert [t.get_text() for t in pre.get_xticklabels()] == ["1", "2", "3\n(output)"]
    assert "output layer" in pre.get_xlabel() and "output" not in act.get_xlabel()
    texts = _legend_texts(key)
    assert texts[:2] == [f"random [{SIGMA_W2}=420]", "he"]
    assert texts[2].startswith("zeros") and "all 0" in texts[2]
    assert texts[3].startswith("measured, bars: min-max over 2 seeds")
    assert texts[4] == "mean-field prediction"
    # One depth spanning under 1.5 decades: linear; networks of two depths: squares say output.
    plot_depth({"a": [_record([1.0, 2.0], ["relu", None])],
                "b": [_record([1.0, 1.5, 2.0, 2.5], ["relu"] * 3 + [None])]},
               tmp_path / "two.png")
    pre = drawn["two.png"].axes[0]
    assert pre.get_yscale() == "linear" and "square" in pre.get_xlabel()
    assert [t.get_text() for t in pre.get_xticklabels()] == ["1", "2", "3", "4"]


def test_histogram_panels_name_hidden_layers_and_s1_xavier(drawn, tmp_path):
    records = {"relu lecun": _record([1.0, 1.0, 1.0], ["relu", "relu", None])}
    plot_histograms(records, tmp_path / "histograms.png",
                    {"relu lecun": f"relu lecun [{SIGMA_W2}=0.986]"})
    fig = drawn["histograms.png"]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("hidden layer 1 (relu output)") and "50% exact zeros" in titles[0]
    assert titles[1].startswith("hidden layer 2 (relu output)")
    assert fig.axes[0].get_ylabel().startswith(f"relu lecun [{SIGMA_W2}=0.986]")
    note = "\n".join(t.get_text() for t in fig.texts)
    assert '"Xavier"' in note and "N(0, 1/fan_in)" in note and "fan_in x Var(W)" in note
    hists = records["relu lecun"]["histograms"]
    plot_row(hists, "S1: relu lecun (activations, 1,000 inputs)", tmp_path / "row.png")
    assert any('"Xavier"' in t.get_text() for t in drawn["row.png"].texts)
    plot_grid([("relu he", hists)], tmp_path / "plain.png")
    assert not [t for t in drawn["plain.png"].texts if "fan_in" in t.get_text()]  # He: no note


def test_naming_notes_only_for_named_families():
    assert naming_notes(["sigmoid lecun"])[0].startswith("lecun = N(0, 1/fan_in)")
    assert naming_notes(["truncated_normal(sigma_w2=2)", "he"]) == []


def test_labels_tell_networks_apart_and_legends_carry_sigma_w2(s4_store):
    _, _, runs = s4_store
    assert sorted(set(labels_for(runs).values())) == ["he", "random"]
    depths = [SimpleNamespace(info=SimpleNamespace(run_id=str(i)), data=SimpleNamespace(
        params={"init.name": "xavier", "model.name": "mlp", "model.hidden": hidden,
                "model.activation": "relu"}, metrics={}))
        for i, hidden in enumerate(("[256, 256]", "[512, 512, 512, 512]", "[10, 5]"))]
    assert list(labels_for(depths).values()) == [
        "xavier, hidden 256x2", "xavier, hidden 512x4", "xavier, hidden 10-5"]
    legend = legend_labels(grouped(runs, labels_for(runs)))
    assert legend["random"] == f"random [{SIGMA_W2}=420]"


def test_compare_prints_what_it_drew(s4_store, capsys, tmp_path):
    uri, _, _ = s4_store
    made = compare_main(["--sweep-id", SWEEP, "--tracking-uri", uri, "--out",
                         str(tmp_path / "cmp"), "--no-log"])
    first, second, *files = capsys.readouterr().out.splitlines()
    assert first.startswith(f"compare: sweep {SWEEP}: 4 finished run(s) in experiment "
                            "'s4_circles'")
    assert second == "  runs per init: random: 2; he: 2"
    assert files[0] == f"curves: {made['curves']}"


def _study(floats: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        family = trial.suggest_categorical("init", ["he", "lecun"])
        value = sum(trial.suggest_float(f"x{i}", 0.1, 10, log=True) for i in range(floats))
        trial.report(value / 2, 0)
        return value + (family == "he")

    study.optimize(objective, n_trials=8)
    return study


def test_optuna_plots_name_the_metric_and_contour_only_continuous(drawn, tmp_path):
    style = dict(matplotlib.rcParams)
    one = _study(1)
    assert continuous_params(one) == ["x0"]
    names = {p.name for p in write_plots(one, tmp_path / "one", "val/acc")}
    assert "contour.png" not in names and "slice.png" in names  # a contour needs two floats
    history = drawn["optimization_history.png"].axes[0]
    assert history.get_ylabel() == "val/acc" and "val/acc (maximize)" in history.get_title()
    assert "Objective Value" not in _legend_texts(history)
    assert drawn["slice.png"].axes[0].get_ylabel() == "val/acc"
    assert drawn["intermediate_values.png"].axes[0].get_ylabel() == "val/acc"
    two = _study(2)
    assert "contour.png" in {p.name for p in write_plots(two, tmp_path / "two", "val/acc")}
    contour = drawn["contour.png"].axes[0]
    assert {contour.get_xlabel(), contour.get_ylabel()} == {"x0", "x1"}  # not "init"
    assert any(ax.get_ylabel() == "val/acc" for ax in drawn["contour.png"].axes)  # colour bar
    assert dict(matplotlib.rcParams) == style  # Optuna's ggplot style did not leak


def test_a_flat_loss_curve_is_shown_flat_with_plain_ticks(drawn, tmp_path):
    """A zero init stuck at ln 2 (loss 0.6931495 vs 0.6931471): plain tick values on a range
    of at least 0.02, not "1e-6 + 6.9314e-1" with float noise filling the panel."""
    flat = [(500, 0.6931495), (1000, 0.6931495), (1500, 0.6931495)]
    history = {"train/loss": flat, "val/loss": [(s, 0.6931471) for s, _ in flat],
               "train/acc": [(s, 0.5) for s, _ in flat], "val/acc": [(s, 0.5) for s, _ in flat]}
    assert plot_curves(history, "zeros-seed1", tmp_path / "curves.png", num_classes=2)
    loss_axis = drawn["curves.png"].axes[0]
    low, high = loss_axis.get_ylim()
    assert high - low >= 0.02 and low < math.log(2) < high
    assert loss_axis.yaxis.get_major_formatter().get_useOffset() is False
