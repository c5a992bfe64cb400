"""No secret written down: a real password in the PostgreSQL URLs of a tracked run and of a
search, and in the userinfo of a tracking-server URL, is then searched for everywhere the
platform writes: every file of the jobs (outputs/, multirun/, Hydra's .hydra/ and multirun.yaml,
logs, optimization_results.yaml, optuna_trials.csv, weights, checkpoints), the whole PostgreSQL
contents (pg_dump of both databases), every MLflow param, tag, metric key and artifact of every
run in both stores, the servers' own files and logs, and the console."""

from __future__ import annotations

import json
import zipfile

import pytest
from conftest import FAST, run_cli
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from store_servers import MLFLOW_DB, OPTUNA_DB, PASSWORD, find_secret, scan_tree

pytest_plugins = ["store_servers"]  # its session fixtures: the servers, the PostgreSQL jobs
pytestmark = pytest.mark.slow


def _leaves(node, path: str = ""):
    """(where, text) for every key and value of a nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}/{key}", str(key)
            yield from _leaves(value, f"{path}/{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, str(node)


def _lines(text: str, where: str) -> list[str]:
    return [f"{where} line {n}: {line.strip()[:300]} ({w})"
            for n, line in enumerate(text.splitlines(), 1) for w in find_secret(line.encode())]


def _scan_store(client: MlflowClient, label: str, download_to) -> tuple[list[str], int]:
    """Every experiment, run (params, tags, metric keys, inputs), logged model and artifact."""
    hits = []
    experiments = client.search_experiments(view_type=ViewType.ALL)
    for experiment in experiments:
        text = json.dumps({"name": experiment.name, "tags": experiment.tags,
                           "artifact_location": experiment.artifact_location})
        hits += [f"{label}: experiment {experiment.name} ({w})" for w in find_secret(text.encode())]
    ids = [e.experiment_id for e in experiments]
    runs = client.search_runs(ids, run_view_type=ViewType.ALL, max_results=1000)
    for run in runs:
        where = f"{label}: run {run.info.run_name} ({run.info.run_id})"
        for path, value in _leaves(run.to_dictionary()):
            hits += [f"{where} {path} = {value[:200]} ({w})" for w in find_secret(value.encode())]
        folder = download_to / run.info.run_id
        folder.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, "", str(folder))
        hits += [f"{where} artifact {h}" for h in scan_tree(folder)]
    search_models = getattr(client, "search_logged_models", None)
    if search_models is not None and ids:
        for model in search_models(ids):
            text = json.dumps(model.to_dictionary(), default=str)
            hits += [f"{label}: logged model {model.name} ({w})" for w in find_secret(text.encode())]
    return hits, len(runs)


@pytest.mark.timeout(900)
def test_no_password_is_written_anywhere(tmp_path, postgres_server, mlflow_server, pg_run,
                                         pg_search):
    # requests sends the URL's userinfo as basic auth; the test server ignores it.
    user_url = mlflow_server.url.replace("http://", f"http://alice:{PASSWORD}@")
    alice = tmp_path / "alice"
    alice.mkdir()
    alice_proc = run_cli(alice, user_url, *FAST, "tracking.experiment=alice-run")

    # The scanner finds what it looks for, in plain files and inside zip archives.
    probe = tmp_path / "probe"
    probe.mkdir()
    with zipfile.ZipFile(probe / "a.ckpt", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.pkl", f"x{PASSWORD}y" * 10)
    assert scan_tree(probe)
    (probe / "a.ckpt").unlink()

    hits: list[str] = []
    # Every file the jobs wrote.
    for root in (pg_run.tmp, pg_search.tmp, alice):
        hits += scan_tree(root)
    # The console.
    for name, job in (("pg run", pg_run.proc), ("pg search", pg_search.proc),
                      ("server run", alice_proc)):
        hits += _lines(job.stdout, f"{name} stdout") + _lines(job.stderr, f"{name} stderr")
    # The whole PostgreSQL contents, and the server's log.
    databases = postgres_server.databases()
    assert {MLFLOW_DB, OPTUNA_DB} <= set(databases)
    for database in databases:
        dump = postgres_server.dump(database)
        assert "CREATE TABLE" in dump or database not in (MLFLOW_DB, OPTUNA_DB)
        hits += _lines(dump, f"pg_dump {database}")
    hits += _lines(postgres_server.log.read_text(errors="replace"), "PostgreSQL server log")
    # Every run of both MLflow stores, through MLflow, artifacts downloaded.
    pg_hits, pg_runs = _scan_store(MlflowClient(postgres_server.url(MLFLOW_DB)), "PostgreSQL store",
                                   tmp_path / "download-pg")
    server_hits, server_runs = _scan_store(MlflowClient(mlflow_server.url), "MLflow server",
                                           tmp_path / "download-server")
    hits += pg_hits + server_hits
    # The tracking server's database, artifact store and log.
    hits += [f"MLflow server files: {h}" for h in scan_tree(mlflow_server.base)]

    assert not hits, f"the password was found in {len(hits)} place(s):\n" + "\n".join(hits)
    # What was searched is there: 1 run + a search's parent and its 3 trials; alice's run.
    assert pg_runs >= 5 and server_runs >= 1, (pg_runs, server_runs)
