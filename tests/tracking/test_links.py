"""Run names, params without noise, and the links into the MLflow UI (no browser here: the
browser tests are tests/ui)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from initlab.tracking import links, views
from initlab.tracking.record import SWEPT_KEYS_FILE, read_swept_keys, run_name, run_params
from initlab.tracking.store import prepare_store


# ---- names -------------------------------------------------------------------------------
def test_a_single_run_is_named_by_family_scale_seed_model_and_data(make_cfg):
    assert run_name(make_cfg("init=he", "dataset=digits"), [], []) == "he-seed0-mlp-digits"
    assert run_name(make_cfg("init=he", "init.scale=2", "seed=3"), [], []) \
        == "he-x2-seed3-mlp-mnist5k"
    assert run_name(make_cfg("init=he", "init.sigma_w2=4"), [], []) \
        == "he(sigma_w2=4)-seed0-mlp-mnist5k"


def test_runs_that_differ_in_std_or_in_a_swept_lr_get_different_names(make_cfg):
    names = {run_name(make_cfg("init=normal", f"init.std={std}"), [], []) for std in (0.01, 0.1)}
    assert names == {"normal(std=0.01)-seed0-mlp-mnist5k", "normal(std=0.1)-seed0-mlp-mnist5k"}
    swept = ["optimizer.lr", "seed"]
    names = [run_name(make_cfg(f"optimizer.lr={lr}", f"seed={seed}"), swept,
                      [f"optimizer.lr={lr}", f"seed={seed}"])
             for lr in ("0.01", "0.001") for seed in (0, 1)]
    assert names == ["xavier-seed0-lr=0.01-mlp-mnist5k", "xavier-seed1-lr=0.01-mlp-mnist5k",
                     "xavier-seed0-lr=0.001-mlp-mnist5k", "xavier-seed1-lr=0.001-mlp-mnist5k"]


def test_a_swept_model_is_named_by_its_option_and_bias_keys_are_shown(make_cfg):
    cfg = make_cfg("model=mlp_512x4", "init.bias.sigma_b2=0.1")
    name = run_name(cfg, ["model", "init.bias.sigma_b2"], ["model=mlp_512x4",
                                                           "init.bias.sigma_b2=0.1"])
    assert name == "xavier-seed0-mlp_512x4-bias.sigma_b2=0.1-mnist5k"


def test_a_search_trial_shows_its_sampled_values_short_and_its_trial_number(make_cfg):
    cfg = make_cfg("init=lecun", "init.scale=0.19351140885595264", "++optuna.trial=2",
                   "++optuna.study=s")
    name = run_name(cfg, ["init", "init.scale"], ["init=lecun", "init.scale=0.19351140885595264"])
    assert name == "lecun-x0.194-seed0-mlp-mnist5k-trial2"


def test_the_swept_keys_come_from_the_sweep_folder(tmp_path, make_cfg):
    assert read_swept_keys(None) == [] and read_swept_keys(tmp_path) == []
    (tmp_path / SWEPT_KEYS_FILE).write_text(json.dumps(["optimizer.lr"]))
    assert read_swept_keys(tmp_path) == ["optimizer.lr"]


def test_swept_keys_are_the_sweep_overrides_and_the_sweepers_search_space():
    config = OmegaConf.create({"hydra": {
        "overrides": {"task": ["init=xavier,he", "dataset=digits", "optimizer.lr=0.1,0.01",
                               "hydra.sweeper.n_trials=3", "+extra=range(2)"]},
        "sweeper": {"params": {"init.scale": "tag(log, interval(0.1, 10))", "seed": "0",
                               "init": "choice(he, lecun)"}}}})
    assert links.swept_keys(config) == ["init", "optimizer.lr", "extra", "init.scale"]


def test_params_leave_out_noise(make_cfg):
    cfg = make_cfg("hparams_search=init_scale", "++optuna.trial=3", "++optuna.study=s",
                   "++optuna.storage=sqlite:///x.db")
    params = run_params(cfg)
    noise = [k for k in params
             if k.startswith(("tracking.", "optuna.", "callbacks.optuna_pruning.trial"))
             or k in ("progress_refresh_rate", "trainer.enable_progress_bar")]
    assert noise == []
    assert params["init.name"] == "xavier"
    assert params["callbacks.optuna_pruning.monitor"] == "val/acc"


# ---- links -------------------------------------------------------------------------------
def test_a_run_link_opens_the_run_in_the_model_training_view():
    url = links.run_url("sqlite:///mlruns/mlflow.db", "3", "abc")
    assert url == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert links.open_hint("sqlite:///mlruns/mlflow.db", url) == (
        f"Open it: mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db  ->  {url}")
    server = "http://alice:s3cret@host:5000/"
    hint = links.open_hint(server, links.run_url(server, "3", "abc"))
    assert hint.startswith("Open it: http://alice:***@host:5000/#/experiments/3/runs/abc?")
    assert "s3cret" not in hint and "mlflow ui" not in hint
    assert links.run_url("databricks", "3", "abc") is None


def test_a_sweep_link_opens_its_view_or_else_the_filtered_runs():
    url = links.sweep_url("sqlite:///m.db", "1", "initlab-sweep-p1", "p1")
    route, query = urlsplit(url).fragment.split("?")
    assert route == "/experiments/1/runs"
    assert parse_qs(query) == {"workflowType": ["machine_learning"], "compareRunsMode": ["CHART"],
                               "viewStateShareKey": ["initlab-sweep-p1"]}
    query = urlsplit(links.sweep_url("sqlite:///m.db", "1", None, "p1")).fragment.split("?")[1]
    assert parse_qs(query)["searchFilter"] == ["tags.`mlflow.parentRunId` = 'p1'"]


def test_the_sweep_view_shows_its_jobs_sorted_by_the_objective_first():
    state = views.sweep_view_state("p1", "val/acc", True, ["init.name", "init.scale"], runs=30)
    assert state["searchFilter"] == "tags.`mlflow.parentRunId` = 'p1'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`val/acc`", False)
    assert state["columnOrder"][:3] == ["params.`init.name`", "params.`init.scale`",
                                        "metrics.`val/acc`"]
    assert not any("diag/" in c for c in state["selectedColumns"])
    first = state["compareRunCharts"][0]
    assert (first["type"], first["metricKey"], first["runsCountToCompare"]) \
        == ("BAR", "val/acc", 30)
    assert state["compareRunSections"][0]["name"] == "val/acc (higher is better)"
    assert state["runsHiddenMode"] == "SHOW_ALL"
    loss = views.sweep_view_state("p1", "val/loss", False, ["init.name"])
    assert loss["orderByAsc"] is True and "lower is better" in loss["compareRunSections"][0]["name"]


def test_the_objective_and_its_direction():
    assert links.objective_of(OmegaConf.create({"optimized_metric": "val/acc"})) \
        == ("val/acc", True)
    assert links.objective_of(OmegaConf.create({"optimized_metric": "val/loss"})) \
        == ("val/loss", False)
    search = OmegaConf.create({"optimized_metric": "val/loss",
                               "hydra": {"sweeper": {"direction": ["maximize", "minimize"]}}})
    assert links.objective_of(search) == ("val/loss", True)


def test_the_run_note_puts_the_headline_metrics_first():
    metrics = {"diag/layer1/chi1": 1.0, "test/acc": 0.9, "val/acc": 0.8765432}
    note = links.run_note(metrics, "val/acc")
    head, _, values = note.splitlines()[:3]
    assert head == "| val/acc (objective) | test/acc |" and values == "| 0.8765 | 0.9 |"
    assert "chi1" not in note
    assert links.run_note({"diag/layer1/chi1": 1.0}, "val/acc") is None


def test_store_tags_experiments_and_keeps_the_newest_sweep_views_listed(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = prepare_store({"tracking_uri": store, "experiment": "e",
                                   "artifact_root": str(tmp_path / "artifacts")})
    client = MlflowClient(store)
    assert client.get_experiment(experiment_id).tags[links.EXPERIMENT_KIND_TAG] \
        == "custom_model_development"
    for parent in ("p1", "p2", "p3"):
        state = views.sweep_view_state(parent, "val/acc", True, ["init.name"])
        key = views.save_sweep_view(client, experiment_id, parent, f"sweep {parent}", state)
        assert key == f"initlab-sweep-{parent}"
    views._unlist_old_views(client, experiment_id, keep=2)
    tags = client.get_experiment(experiment_id).tags
    saved = {k.rsplit("-", 1)[1]: json.loads(v) for k, v in tags.items()
             if k.startswith(views.VIEW_TAG)}
    assert sorted(saved) == ["p1", "p2", "p3"]
    listed = sorted(p for p, v in saved.items() if "name" in v)
    assert len(listed) == 2
    for parent, view in saved.items():  # listed or not, each still opens its sweep
        assert view["searchFilter"] == f"tags.`mlflow.parentRunId` = '{parent}'"
        assert view["selectedColumns"] and view["compareRunCharts"]
    listed_view = saved[listed[0]]
    assert json.loads(listed_view["state"])["searchFilter"] == listed_view["searchFilter"]


@pytest.mark.parametrize("uri,base", [("sqlite:///x.db", links.LOCAL_UI),
                                      ("postgresql+psycopg2://u@h/db", links.LOCAL_UI),
                                      ("https://mlflow.example.org/", "https://mlflow.example.org"),
                                      ("databricks", None)])
def test_where_the_ui_is(uri, base):
    assert links.ui_base(uri) == base
