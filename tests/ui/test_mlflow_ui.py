"""The links a user is given, opened as a user opens them: system Chromium, driven by
Playwright, on a fresh profile (a new browser context: no local storage), against a real
``mlflow ui`` process reading the store a real multirun and a real search wrote.

Skips with one line where Playwright or a Chromium is missing (docs/tracking.md, "The MLflow
UI", says how to get both).  ``INITLAB_CHROMIUM`` names another Chromium-based browser binary.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import server_env, stop_group, wait_healthy
from conftest import FAST, run_cli, seed_store
from mlflow.tracking import MlflowClient

from initlab.tracking.store import prepare_store

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WAIT_MS = 90_000  # a loaded 2-core machine renders slowly


def chromium() -> str | None:
    for candidate in (os.environ.get("INITLAB_CHROMIUM"), "chromium", "chromium-browser",
                      "google-chrome", "/usr/bin/chromium"):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return shutil.which(candidate) or candidate
    return None


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the browser -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install -e '.[ui]'")
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium: apt-get install chromium (or INITLAB_CHROMIUM=/path/to/chrome)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh profile: a new context has no cookies and no local storage."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    yield context.new_page()
    context.close()


# ---- the store, what wrote it, and the UI over it ------------------------------------------
@dataclass
class Recorded:
    ui: str                 # the running `mlflow ui`
    store: str
    run_link: str           # what a single run printed
    multirun_link: str      # what `-m init=xavier,he` printed
    search_link: str        # what `-m hparams_search=init_scale` printed
    screenshots: Path


def _link(stdout: str, prefix: str) -> str:
    found = re.findall(rf"^{prefix}: .*?(http://\S+)$", stdout, flags=re.MULTILINE)
    assert found, f"no '{prefix}:' link in:\n{stdout[-3000:]}"
    return found[-1]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, browser) -> Recorded:
    """``mlflow ui`` (started before the jobs: it imports while they train), a two-job multirun
    and a three-trial search into its store; the links they printed, pointed at this UI."""
    base = tmp_path_factory.mktemp("ui")
    store = seed_store(base / "mlruns" / "mlflow.db")
    # The schema first: `mlflow ui` creates a missing one too, and without initlab's lock.
    prepare_store({"tracking_uri": store, "experiment": "initlab",
                   "artifact_root": str(base / "mlruns" / "artifacts")})
    port = free_port()
    log = base / "mlflow-ui.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=base, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=server_env())
    try:
        for folder in ("multirun-job", "search-job"):
            (base / folder).mkdir()
        multirun = run_cli(base / "multirun-job", store, "-m", "init=xavier,he", *FAST)
        search = run_cli(base / "search-job", store, "-m", "hparams_search=init_scale", *FAST,
                         "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1")
        ui = f"http://127.0.0.1:{port}"
        wait_healthy(ui, server, log, "mlflow ui")

        def here(link: str) -> str:
            assert link.startswith("http://127.0.0.1:5000/#/"), link
            return ui + link[len("http://127.0.0.1:5000"):]

        shots = Path(os.environ.get("INITLAB_UI_SCREENSHOTS", base / "screenshots"))
        shots.mkdir(parents=True, exist_ok=True)
        yield Recorded(ui, store, here(_link(multirun.stdout, "Open it")),
                       here(_link(multirun.stdout, "Compare them")),
                       here(_link(search.stdout, "Compare them")), shots)
    finally:
        stop_group(server, grace=15)


def _jobs(store: str, link: str) -> list:
    """The sweep's job runs, found from the link's view key (``initlab-sweep-<parent run>``)."""
    parent = re.search(r"viewStateShareKey=initlab-sweep-([0-9a-f]+)", link).group(1)
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("initlab")
    return client.search_runs([experiment.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent}'")


def _model_training_view(page) -> None:
    """The sidebar of MLflow's model-training view (Runs, Models, Model registry), not the GenAI
    one (Overview, Traces, Evaluation runs, Judges)."""
    body = page.inner_text("body")
    assert "Model registry" in body and "Evaluation runs" not in body, body[:500]


# ---- the tests ---------------------------------------------------------------------------
def test_the_run_link_opens_the_run_in_the_model_training_view(recorded, page):
    run_id = re.search(r"/runs/([0-9a-f]{32})", recorded.run_link).group(1)
    run = MlflowClient(recorded.store).get_run(run_id)
    page.goto(recorded.run_link)
    page.get_by_role("heading", name=run.info.run_name).wait_for(timeout=WAIT_MS)
    page.get_by_text("val/acc (objective)").wait_for(timeout=WAIT_MS)  # the description
    page.screenshot(path=recorded.screenshots / "run.png")
    _model_training_view(page)


@pytest.mark.parametrize("which", ["multirun", "search"])
def test_the_sweep_link_shows_every_job_and_a_chart_of_the_objective(recorded, page, which):
    link = recorded.multirun_link if which == "multirun" else recorded.search_link
    jobs = _jobs(recorded.store, link)
    names = sorted(r.info.run_name for r in jobs)
    assert len(names) == (2 if which == "multirun" else 3) and len(set(names)) == len(names)
    page.goto(link)
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for(timeout=WAIT_MS)
    page.get_by_text(f"{len(names)} matching runs").wait_for(timeout=WAIT_MS)  # no other run

    # The objective's chart comes first, a bar per job.
    card = page.get_by_test_id("experiment-view-compare-runs-card").first
    card.locator("g.barlayer path").nth(len(names) - 1).wait_for(timeout=WAIT_MS)
    assert card.inner_text().splitlines()[0] == "val/acc"
    assert card.locator("g.barlayer path").count() == len(names)
    page.screenshot(path=recorded.screenshots / f"{which}.png")
    _model_training_view(page)
