"""Nothing read from a store is executed: compare over a store someone else wrote runs neither
a pickle nor a ``_target_`` planted in it, and rebuilds models from the project's own nets."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from initlab.nets import MLP
from initlab.report import rebuild
from initlab.report.compare import main
from initlab.report.query import param_value, params_under
from initlab.tracking.artifacts import save_weights

REPORT = Path(__file__).resolve().parents[2] / "src" / "initlab" / "report"

# What S4's 2-10-5-1 MLP on circles records (MLflow params drop `_target_`; a hostile store
# adds it anyway, pointing at code).
CIRCLES_PARAMS = {
    "model.name": "mlp2-10-5-1", "model.in_features": "2", "model.num_outputs": "1",
    "model.hidden": "[10, 5]", "model.activation": "relu",
    "dataset.name": "circles", "dataset.in_features": "2", "dataset.num_classes": "2",
    "dataset.num_outputs": "1", "dataset.options.n_train": "300", "dataset.options.n_val": "100",
    "dataset.options.n_test": "100", "dataset.options.noise": "0.05",
    "dataset.options.factor": "0.8", "dataset.options.seeds": "[1, 3, 2]",
    "init.name": "he", "init.scale": "1.0", "init.distribution": "normal", "seed": "0",
}


class Payload:
    """Unpickling this runs ``code`` (what ``torch.load(weights_only=False)`` would do)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def touch_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def hostile_config(marker: Path) -> str:
    return (f"model:\n  _target_: builtins.exec\n  _args_: [{touch_code(marker)!r}]\n"
            f"dataset:\n  _target_: os.system\n  command: touch {marker}\n")


def plant_run(client: MlflowClient, experiment_id: str, tmp: Path, marker: Path, *,
              pickle_weights: bool = False, safetensors: bool = False,
              **params: str) -> str:
    """A FINISHED run written by hand: params, a hostile ``config.yaml`` and weights."""
    run = client.create_run(experiment_id, run_name="planted")
    run_id = run.info.run_id
    for key, value in {**CIRCLES_PARAMS, "model._target_": "os.system", **params}.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "test/acc", 0.5)
    files = tmp / run_id
    (files / "model").mkdir(parents=True)     # an old run's pickle lived in model/
    (files / "weights").mkdir(parents=True)
    (files / "config.yaml").write_text(hostile_config(marker))
    if pickle_weights:
        torch.save({"config": {"model": {"_target_": "os.system"}}, "state_dict": Payload(
            touch_code(marker))}, files / "model" / "final_weights.pt")
    if safetensors:
        torch.manual_seed(0)
        save_weights(MLP(2, 1, [10, 5]), files / "weights" / "final_weights.safetensors")
    client.log_artifact(run_id, str(files / "config.yaml"))
    for folder in ("model", "weights"):
        for path in (files / folder).iterdir():
            client.log_artifact(run_id, str(path), folder)
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def hostile(tmp_path: Path, store: str):
    client = MlflowClient(store)
    experiment_id = client.create_experiment(
        "planted", artifact_location=(tmp_path / "mlruns" / "artifacts").as_uri())
    return client, experiment_id, tmp_path / "MARKER"


def test_the_planted_pickle_is_live(tmp_path: Path):
    """The payload does run when unpickled, so the tests below would see it if compare did."""
    control = tmp_path / "CONTROL"
    torch.save({"state_dict": Payload(touch_code(control))}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)  # the test itself, never src/
    assert control.exists()


def test_compare_cli_runs_no_planted_pickle_and_no_target(tmp_path: Path, store: str, hostile):
    client, experiment_id, marker = hostile
    old = plant_run(client, experiment_id, tmp_path / "files", marker, pickle_weights=True)
    new = plant_run(client, experiment_id, tmp_path / "files", marker, safetensors=True)
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "initlab.compare", "--runs", old, new, "--tracking-uri", store,
         "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert not marker.exists()
    # The old run is skipped for boundaries with one line; the new one is drawn, its model
    # rebuilt from initlab.nets.MLP whatever `_target_` the run claims.
    warnings = [line for line in proc.stderr.splitlines() if old in line]
    assert len(warnings) == 1 and "final_weights.pt" in warnings[0] and "never unpickled" in warnings[0]
    assert (out / "boundaries.png").stat().st_size > 1000
    assert (out / "summary.md").exists() and (out / "metrics.csv").exists()
    assert "MLflow comparison run" in proc.stdout


def test_compare_refuses_cleanly_what_it_cannot_rebuild(tmp_path: Path, store: str, hostile,
                                                        caplog):
    """A model that is not one of the project's nets, a data set with string options or sizes
    that do not match the weights: skipped with a reason, never an import of a stored name."""
    client, experiment_id, marker = hostile
    runs = [
        plant_run(client, experiment_id, tmp_path / "files", marker, safetensors=True,
                  **{"model.name": "evil", "model.in_features": "2", "model.hidden": "None"}),
        plant_run(client, experiment_id, tmp_path / "files", marker, safetensors=True,
                  **{"model.name": "os.system"}, **{"model.hidden": "[999]"}),
        plant_run(client, experiment_id, tmp_path / "files", marker, safetensors=True,
                  **{"dataset.options.noise": "__import__('os').system('touch x')"}),
        plant_run(client, experiment_id, tmp_path / "files", marker, safetensors=True,
                  **{"dataset.name": "builtins.exec"}),
    ]
    with caplog.at_level("WARNING"):
        made = main(["--runs", *runs, "--tracking-uri", store, "--out", str(tmp_path / "cmp"),
                     "--no-log"])
    assert "boundaries" not in made and not marker.exists()
    assert not (tmp_path / "x").exists()
    skipped = [r.getMessage() for r in caplog.records if "skipped for decision" in r.getMessage()]
    assert len(skipped) == len(runs), skipped


def test_unknown_run_id_is_refused_in_one_line(store: str, tmp_path: Path):
    MlflowClient(store).search_experiments()  # create the store
    with pytest.raises(SystemExit, match="compare: no run 'nope'"):
        main(["--runs", "nope", "--tracking-uri", store, "--out", str(tmp_path / "cmp")])


def test_a_trained_run_gets_its_decision_boundaries(tmp_path: Path, store: str, make_cfg):
    from initlab.jobs import train

    train(make_cfg("dataset=circles", "model=mlp_s4", "trainer.max_epochs=1",
                   "dataset.steps_per_epoch=20", "trainer.enable_progress_bar=false"))
    client = MlflowClient(store)
    (run,) = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
              if r.data.tags.get("initlab.kind") is None]
    assert "weights/final_weights.safetensors" in {
        a.path for a in client.list_artifacts(run.info.run_id, "weights")}
    made = main(["--runs", run.info.run_id, "--tracking-uri", store, "--out",
                 str(tmp_path / "cmp"), "--no-log"])
    assert made["boundaries"].stat().st_size > 1000
    assert {"curves", "table", "summary"} <= set(made)


# ---- the pieces ------------------------------------------------------------------------------
class FakeRun:
    def __init__(self, params: dict[str, str]) -> None:
        self.data = type("Data", (), {"params": params, "metrics": {}, "tags": {}})()


def test_params_are_parsed_as_literals_only():
    assert param_value("[10, 5]") == [10, 5] and param_value("2") == 2
    assert param_value("0.05") == 0.05 and param_value("True") is True
    assert param_value("None") is None and param_value("") == ""
    assert param_value("[__import__('os')]") == "[__import__('os')]"  # stays a string
    assert params_under(FakeRun(CIRCLES_PARAMS), "model")["hidden"] == [10, 5]
    assert "options.seeds" not in params_under(FakeRun(CIRCLES_PARAMS), "dataset")


def test_models_come_from_the_registry_by_name_or_signature():
    assert rebuild.model_class({"name": "mlp2-10-5-1"}) is MLP
    assert rebuild.model_class({"name": "lenet"}).__name__ == "LeNet"
    assert rebuild.model_class({"name": "mine", "in_features": 2, "hidden": [3]}) is MLP
    with pytest.raises(rebuild.Unusable):
        rebuild.model_class({"name": "os.system"})


def test_rebuilt_model_matches_the_saved_one(tmp_path: Path):
    torch.manual_seed(0)
    net = MLP(2, 1, [10, 5])
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    model = rebuild.build_model(FakeRun(CIRCLES_PARAMS), weights)
    x = torch.randn(7, 2)
    assert torch.equal(model(x), net(x))
    huge = FakeRun({**CIRCLES_PARAMS, "model.hidden": "[1000000000, 1000000000]"})
    with pytest.raises(rebuild.Unusable, match="does not match the weights"):
        rebuild.build_model(huge, weights)  # built on the meta device: nothing allocated


def test_report_code_executes_nothing_from_a_store_and_imports_only_downwards():
    forbidden_modules = ("initlab.engine", "initlab.search", "initlab.jobs", "hydra",
                         "hydra_plugins", "pickle", "dill", "cloudpickle")
    for path in REPORT.glob("*.py"):
        text = path.read_text()
        for needle in ("weights_only=False", "instantiate", "get_object", "get_class",
                       "get_method", "import_module", "torch.load", "eval("):
            assert needle not in text.replace(".eval()", "").replace("literal_eval(", ""), (
                path.name, needle)
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(forbidden_modules), (path.name, name)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "__import__"), path.name
        assert len(text.splitlines()) <= 300, path.name
