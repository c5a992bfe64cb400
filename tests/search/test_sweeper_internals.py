"""The Optuna sweeper plugin's parts, without training: its storage and bookkeeping on Optuna's
public API, and the one Optuna convention it relies on that is not API (pinned here so an
Optuna upgrade that changes it fails this test, not a resumed study)."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.initlab_optuna_sweeper import _study
from initlab.config.search_space import SearchSpace
from hydra_plugins.initlab_optuna_sweeper._storage import resolve_storage
from hydra_plugins.initlab_optuna_sweeper._trial import job_error, job_overrides
from initlab.search.trial import ATTR_FAILED, ATTR_HEARTBEAT, ATTR_RETRY_OF, open_storage

PLUGIN = Path(__file__).resolve().parents[2] / "src" / "hydra_plugins" / "initlab_optuna_sweeper"
CONFIG = OmegaConf.create({"tracking": {"tracking_uri": "none"}})

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sqlite_study(tmp_path: Path, name: str = "s"):
    spec = resolve_storage(f"sqlite:///{tmp_path}/optuna.db", CONFIG)
    study = optuna.create_study(study_name=name, storage=spec.storage, direction="maximize")
    return spec, study, _study.Trials(study, spec.storage)


def test_the_plugin_reads_no_private_names_of_other_objects() -> None:
    """Public API of Optuna, Hydra, MLflow only: ``x._name`` is allowed on ``self`` alone."""
    found = []
    for path in sorted(PLUGIN.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") \
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not found


def test_optuna_keeps_enqueued_params_in_fixed_params(tmp_path: Path) -> None:
    """Pins ``_study.OPTUNA_FIXED_PARAMS``: a surplus trial taken from the queue is withdrawn
    before its parameters are suggested, and only this system attribute still holds them."""
    _, study, trials = sqlite_study(tmp_path)
    study.enqueue_trial({"x": 3, "name": "he"})
    trial = study.ask()
    assert not trial.params
    assert trials.queued_params(trials.get(trial.number)) == {"x": 3, "name": "he"}
    assert trials.queued_params(trials.get(study.ask().number)) is None


def test_trials_are_written_through_the_storage_the_sweeper_holds(tmp_path: Path) -> None:
    spec, study, trials = sqlite_study(tmp_path)
    done = study.ask()
    done.suggest_float("x", 0, 1)
    study.tell(done, 1.0)
    running = study.ask()
    x = running.suggest_float("x", 0, 1)
    assert trials.trial_id(running.number) != trials.trial_id(done.number)

    assert trials.abandon(running.number, "interrupted")
    assert not trials.abandon(running.number, "interrupted")  # not RUNNING any more
    by_number = {t.number: t for t in study.get_trials()}  # the study sees the writes at once
    assert by_number[running.number].state == TrialState.FAIL
    assert by_number[running.number].user_attrs[ATTR_FAILED] == "interrupted"
    queued = [t for t in by_number.values() if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].user_attrs[ATTR_RETRY_OF] == running.number
    again = study.ask()
    assert again.suggest_float("x", 0, 1) == x
    assert _study.progress(study).done == 1 and _study.rank(study, again.number) == 1


def test_stale_trials_of_other_processes_are_failed_and_requeued(tmp_path: Path) -> None:
    _, study, trials = sqlite_study(tmp_path)
    mine, theirs, fresh = (study.ask() for _ in range(3))
    for t in (mine, theirs, fresh):
        t.suggest_int("n", 0, 9)
    old = time.time() - 100
    trials.set_attr(mine.number, ATTR_HEARTBEAT, old)
    trials.set_attr(theirs.number, ATTR_HEARTBEAT, old)
    trials.set_attr(fresh.number, ATTR_HEARTBEAT, time.time())
    assert trials.fail_stale(10, own={mine.number}) == [theirs.number]
    assert trials.get(theirs.number).user_attrs[ATTR_FAILED] == "stale"
    assert trials.get(mine.number).state == trials.get(fresh.number).state == TrialState.RUNNING

    heartbeat = _study.Heartbeat(trials, 0.5)
    try:
        heartbeat.add(mine.number)
        assert trials.get(mine.number).user_attrs[ATTR_HEARTBEAT] > old
    finally:
        heartbeat.stop()


def test_journal_storage_path_is_read_from_its_node(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    node = {"_target_": "optuna.storages.JournalStorage",
            "log_storage": {"_target_": "optuna.storages.journal.JournalFileBackend",
                            "file_path": "studies/journal.log"}}
    (tmp_path / "studies").mkdir()
    spec = resolve_storage(OmegaConf.create(node), CONFIG)
    path = str(tmp_path / "studies" / "journal.log")
    assert spec.lock_file == Path(f"{path}.claim.lock")
    assert spec.for_jobs["log_storage"]["file_path"] == path  # absolute for every job
    assert spec.text == f"JournalStorage {path}"
    study = optuna.create_study(study_name="j", storage=spec.storage)
    study.enqueue_trial({"x": 1.0})
    trials = _study.Trials(study, spec.storage)
    assert trials.queued_params(trials.get(study.ask().number)) == {"x": 1.0}
    job_side = open_storage(spec.for_jobs)  # what a job opens
    assert job_side.get_study_id_from_name("j") == trials.study_id


def test_in_memory_storage_is_an_object_the_sweeper_holds() -> None:
    spec = resolve_storage(None, CONFIG)
    assert isinstance(spec.storage, optuna.storages.InMemoryStorage) and spec.for_jobs is None
    study = optuna.create_study(storage=spec.storage)
    trials = _study.Trials(study, spec.storage)
    assert trials.abandon(study.ask().number, "surplus")


def test_job_overrides_suggest_the_space_with_public_suggest_methods(tmp_path: Path) -> None:
    _, study, _ = sqlite_study(tmp_path)
    space = SearchSpace({"init": CategoricalDistribution(["he", "xavier"]),
                         "init.scale": FloatDistribution(0.5, 2.0, log=True),
                         "n": IntDistribution(1, 9, step=2),
                         "lr": FloatDistribution(0.1, 0.5, step=0.1)},
                        {"seed": "seed=3"})
    trial = study.ask()
    overrides = job_overrides(trial, space, CONFIG, None, "my 'study'", "sqlite:///x.db")
    assert study.trials[0].distributions == space.distributions
    assert overrides[-4:] == ["seed=3", "++optuna.study='my \\'study\\''",
                              f"++optuna.trial={trial.number}", "++optuna.storage='sqlite:///x.db'"]
    assert trial.user_attrs["overrides"] == overrides[:5]


def test_a_failed_jobs_exception_comes_from_the_public_return_value() -> None:
    boom, failed, done = RuntimeError("boom"), JobReturn(), JobReturn()
    failed.return_value, failed.status = boom, JobStatus.FAILED  # as Hydra's run_job sets them
    done.return_value, done.status = 0.5, JobStatus.COMPLETED
    assert job_error(failed) is boom
    assert job_error(done) is None and job_error(None) is None


@pytest.mark.parametrize("module", sorted(p.stem for p in PLUGIN.glob("*.py")))
def test_plugin_modules_stay_small(module: str) -> None:
    assert len((PLUGIN / f"{module}.py").read_text().splitlines()) <= 300
