"""A real PostgreSQL server (from the system's binaries) as the MLflow store and the Optuna
study storage: a tracked run and a short search go in, and the rows are read back with psycopg2.

Skips with one line where psycopg2 or the server binaries are absent (``store_servers``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from store_servers import MLFLOW_DB, OPTUNA_DB, SEARCH

pytest_plugins = ["store_servers"]  # its session fixtures: the servers, the PostgreSQL jobs
pytestmark = pytest.mark.slow


def _experiment_runs(pg, experiment: str) -> list[tuple]:
    return pg.query(MLFLOW_DB, """
        SELECT r.run_uuid, r.status, r.name, r.lifecycle_stage, r.artifact_uri
        FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id
        WHERE e.name = %s ORDER BY r.start_time""", (experiment,))


def _tags(pg, run_id: str) -> dict[str, str]:
    return dict(pg.query(MLFLOW_DB, "SELECT key, value FROM tags WHERE run_uuid = %s", (run_id,)))


def test_tracked_run_lands_in_postgres(postgres_server, pg_run):
    pg = postgres_server
    runs = _experiment_runs(pg, "pg-run")
    assert len(runs) == 1, runs
    run_id, status, name, stage, artifact_uri = runs[0]
    assert (status, stage) == ("FINISHED", "active")
    assert "-seed0-" in name
    params = dict(pg.query(MLFLOW_DB, "SELECT key, value FROM params WHERE run_uuid = %s",
                           (run_id,)))
    assert params["dataset.name"] == "digits" and params["model.hidden"] == "[32, 32]"
    metrics = dict(pg.query(MLFLOW_DB, "SELECT key, value FROM latest_metrics WHERE run_uuid = %s",
                            (run_id,)))
    assert 0.3 < metrics["test/acc"] <= 1.0 and "val/acc" in metrics
    # With a database store, artifacts go to tracking.artifact_root (run_cli passes
    # <tmp>/mlruns/artifacts), not to MLflow's default ./mlruns of the job's working directory.
    root = (pg_run.tmp / "mlruns" / "artifacts").resolve()
    location, = pg.query(MLFLOW_DB, "SELECT artifact_location FROM experiments WHERE name = %s",
                         ("pg-run",))[0]
    assert location == (root / "pg-run").as_uri(), location
    assert artifact_uri.startswith(location)
    artifacts = Path(artifact_uri.removeprefix("file://"))
    assert (artifacts / "config.yaml").is_file()
    assert (artifacts / "weights" / "final_weights.safetensors").is_file()


@pytest.mark.timeout(900)
def test_search_lands_in_postgres(postgres_server, pg_search):
    pg = postgres_server
    # Optuna: one study, three finished trials, each linked to its MLflow run.
    studies = pg.query(OPTUNA_DB, "SELECT study_id, study_name FROM studies")
    assert len(studies) == 1, studies
    study_id = studies[0][0]
    trials = pg.query(OPTUNA_DB, "SELECT trial_id, number, state FROM trials WHERE study_id = %s "
                                 "ORDER BY number", (study_id,))
    assert [t[1] for t in trials] == [0, 1, 2]
    assert {t[2] for t in trials} <= {"COMPLETE", "PRUNED"}, trials
    complete = [t[0] for t in trials if t[2] == "COMPLETE"]
    assert complete
    values = pg.query(OPTUNA_DB, "SELECT trial_id, value FROM trial_values WHERE trial_id = ANY(%s)",
                      (complete,))
    assert len(values) == len(complete) and all(0.0 <= v <= 1.0 for _, v in values)
    params = pg.query(OPTUNA_DB, "SELECT DISTINCT param_name FROM trial_params tp JOIN trials t "
                                 "USING (trial_id) WHERE t.study_id = %s", (study_id,))
    assert {p for p, in params} == {"init", "init.scale"}
    linked = pg.query(OPTUNA_DB, "SELECT a.value_json FROM trial_user_attributes a JOIN trials t "
                                 "USING (trial_id) WHERE t.study_id = %s AND a.key = 'mlflow_run_id'",
                      (study_id,))
    trial_runs = {json.loads(v) for v, in linked}
    assert len(trial_runs) == 3

    # MLflow: the sweep's parent run and one child run per trial, all FINISHED.
    runs = {r[0]: r for r in _experiment_runs(pg, "pg-search")}
    parents = [i for i in runs if _tags(pg, i).get("initlab.kind") == "sweep"]
    assert len(parents) == 1 and len(runs) == 4, runs
    assert set(runs) - set(parents) == trial_runs
    for run_id, status, *_ in runs.values():
        assert status == "FINISHED", runs[run_id]
    for run_id in trial_runs:
        tags = _tags(pg, run_id)
        assert tags["mlflow.parentRunId"] == parents[0]
        assert tags["optuna.study_name"] == studies[0][1]


def test_password_from_pgpassword(postgres_server, tmp_path, monkeypatch):
    """docs/tracking.md's recipe: no password in either URL; libpq reads ``PGPASSWORD``."""
    pg = postgres_server
    pg.create_database("mlflow_env")
    pg.create_database("optuna_env")
    monkeypatch.setenv("PGPASSWORD", pg.password)
    search = [a for a in SEARCH if not a.startswith("hydra.sweeper.n_trials=")]
    run_cli(tmp_path, pg.url("mlflow_env", password=False), *search,
            "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={pg.url('optuna_env', password=False)}")
    statuses = pg.query("mlflow_env", "SELECT status FROM runs")
    assert [s for s, in statuses] == ["FINISHED", "FINISHED"]  # the sweep's parent and its trial
    states = pg.query("optuna_env", "SELECT state FROM trials")
    assert len(states) == 1 and states[0][0] in ("COMPLETE", "PRUNED")
