"""``python -m initlab.repair``: end the runs a dead process left RUNNING.

A process killed with ``kill -9``, a machine that was lost, a job the OOM killer took: none of
them can end its MLflow run, which then stays RUNNING forever.  Every running run carries a
heartbeat (the tag ``initlab.heartbeat``, stamped every ``tracking.heartbeat_s`` seconds, see
``initlab.tracking.heartbeat``); this command finds the RUNNING runs whose heartbeat stopped more
than ``--older-than`` seconds ago (and at least three heartbeat intervals ago), marks them FAILED
(tag ``initlab.repaired``; their end time is their last heartbeat), and marks their Optuna
trials FAIL (``initlab.failed = stale``, not counted toward ``n_trials``; their parameters queued
again, as the sweeper does).  With an Optuna storage it also fails the RUNNING trials whose
sweeper stopped stamping them (``initlab.heartbeat`` user attribute) more than ``--trial-grace``
seconds ago.  It prints every change; ``--dry-run`` prints them without making them.

    python -m initlab.repair --tracking-uri sqlite:///mlruns/mlflow.db [--older-than 60]
        [--experiment initlab] [--optuna-storage sqlite:///mlruns/optuna.db | journal:PATH]
        [--trial-grace 90] [--dry-run]

Runs of older versions, without a heartbeat tag, count from their start time.  A run whose
process is still alive on this machine (same host, live pid) is left alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab.tracking.heartbeat import TAG_HEARTBEAT, TAG_HEARTBEAT_S
from initlab.tracking.secrets import mask
from initlab.tracking.store import sqlite_path

TAG_REPAIRED = "initlab.repaired"
STALE = "stale"  # the trial attribute initlab.failed the sweeper uses for a dead process's trial
DEFAULT_URI = "sqlite:///mlruns/mlflow.db"


@dataclass
class Report:
    dry_run: bool
    lines: list[str] = field(default_factory=list)
    runs: int = 0
    trials: int = 0
    alive: int = 0

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def last_sign_of_life(run: Any) -> float:
    """Unix seconds of the run's last heartbeat (its start for runs without one)."""
    start = (run.info.start_time or 0) / 1000
    try:
        return max(float(run.data.tags.get(TAG_HEARTBEAT, 0)), start)
    except ValueError:
        return start


def _process_alive(run: Any) -> bool:
    """The run's process is alive on this machine (then it is not dead, only quiet)."""
    tags = run.data.tags
    pid = tags.get("initlab.pid", "")
    if tags.get("host") != platform.node() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie is dead
        text = stat.read_text()
        return text[text.rfind(")") + 2:].split()[0] != "Z"
    return True


# ---- MLflow runs -----------------------------------------------------------------------------
def stale_runs(client: Any, experiment_ids: list[str], older_than: float,
               now: float) -> tuple[list[tuple[Any, float]], list[Any]]:
    """(stale RUNNING runs with their last sign of life, RUNNING runs still alive)."""
    from mlflow.entities import ViewType

    stale, fresh = [], []
    token = None
    while True:
        page = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'",
                                  run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        for run in page:
            last = last_sign_of_life(run)
            try:
                interval = float(run.data.tags.get(TAG_HEARTBEAT_S, 0))
            except ValueError:
                interval = 0.0
            if now - last > max(older_than, 3 * interval) and not _process_alive(run):
                stale.append((run, last))
            else:
                fresh.append(run)
        token = page.token
        if not token:
            return stale, fresh


def fail_run(client: Any, run: Any, last: float, now: float, report: Report) -> None:
    info = run.info
    deleted = info.lifecycle_stage == "deleted"
    where = f"host {run.data.tags.get('host', '?')}, pid {run.data.tags.get('initlab.pid', '?')}"
    report.say(f"run {info.run_id} '{info.run_name}'{' (deleted)' if deleted else ''}: RUNNING -> "
               f"FAILED (last heartbeat {_when(last)}, {now - last:.0f} s ago; {where})")
    report.runs += 1
    if report.dry_run:
        return
    if deleted:
        client.restore_run(info.run_id)
    client.set_tag(info.run_id, TAG_REPAIRED,
                   f"no heartbeat since {_when(last)}: marked FAILED by initlab.repair "
                   f"at {_when(now)}")
    client.set_terminated(info.run_id, "FAILED", end_time=int(last * 1000))
    if deleted:
        client.delete_run(info.run_id)


# ---- Optuna trials ---------------------------------------------------------------------------
def open_optuna_storage(spec: str) -> Any:
    """An Optuna storage from a URL, or ``journal:PATH`` for a journal file."""
    import optuna

    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(spec[len("journal:"):]))
    from initlab.search.trial import rdb_storage

    return rdb_storage(spec)


def default_optuna_storage(tracking_uri: str) -> str | None:
    """The sweeper's default (``hydra.sweeper.storage=auto``): ``optuna.db`` beside a SQLite
    MLflow store, if it is there."""
    db = sqlite_path(tracking_uri)
    if db is None or not (db.parent / "optuna.db").exists():
        return None
    return f"sqlite:///{(db.parent / 'optuna.db').resolve()}"


def fail_trial(storage: Any, study_name: str, number: int, why: str, report: Report) -> bool:
    """Mark a RUNNING trial FAIL (``initlab.failed = stale``) and queue its parameters again,
    as the sweeper does for a dead process's trial; False when it is not RUNNING."""
    import optuna
    from optuna.trial import TrialState

    from initlab.search.trial import ATTR_FAILED, ATTR_RETRY_OF

    study_id = storage.get_study_id_from_name(study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    frozen = storage.get_trial(trial_id)
    if frozen.state != TrialState.RUNNING:
        return False
    report.say(f"trial {number} of study '{study_name}': RUNNING -> FAIL ({why}; "
               f"{ATTR_FAILED}={STALE}, not counted; its parameters queued again)")
    report.trials += 1
    if report.dry_run:
        return True
    storage.set_trial_user_attr(trial_id, ATTR_FAILED, STALE)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    if frozen.params:
        study = optuna.load_study(study_name=study_name, storage=storage)
        study.enqueue_trial(frozen.params, user_attrs={ATTR_RETRY_OF: frozen.number},
                            skip_if_exists=False)
    return True


def stale_trials(storage: Any, grace: float, now: float, done: set[tuple[str, int]],
                 report: Report) -> None:
    """Fail RUNNING trials whose sweeper stopped stamping them ``grace`` seconds ago."""
    from optuna.trial import TrialState

    from initlab.search.trial import ATTR_HEARTBEAT

    for summary in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(summary.study_name)
        for trial in storage.get_all_trials(study_id, deepcopy=False,
                                            states=(TrialState.RUNNING,)):
            if (summary.study_name, trial.number) in done:
                continue
            beat = trial.user_attrs.get(ATTR_HEARTBEAT)
            if beat is None and trial.datetime_start is not None:
                beat = trial.datetime_start.timestamp()
            if beat is not None and now - float(beat) > grace:
                fail_trial(storage, summary.study_name, trial.number,
                           f"its sweeper's last heartbeat {_when(float(beat))}, "
                           f"{now - float(beat):.0f} s ago", report)


# ---- the command -----------------------------------------------------------------------------
def repair(tracking_uri: str, older_than: float = 60.0, experiments: Sequence[str] = (),
           optuna_storage: str | None = None, trial_grace: float = 90.0,
           dry_run: bool = False, now: float | None = None) -> Report:
    """Mark stale RUNNING runs FAILED and their trials FAIL; the report lists what changed."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    now = time.time() if now is None else now
    report = Report(dry_run)
    client = MlflowClient(tracking_uri)
    if experiments:
        found = [client.get_experiment_by_name(name) for name in experiments]
        missing = [n for n, e in zip(experiments, found, strict=True) if e is None]
        if missing:
            raise SystemExit(f"initlab.repair: no experiment {', '.join(map(repr, missing))} in "
                             f"{mask(tracking_uri)}")
    else:
        found = client.search_experiments(view_type=ViewType.ALL)
    ids = [e.experiment_id for e in found]
    verb = "would mark" if dry_run else "marks"
    report.say(f"initlab.repair: {mask(tracking_uri)}: {verb} FAILED the RUNNING runs with no "
               f"heartbeat for more than {older_than:g} s")
    stale, fresh = stale_runs(client, ids, older_than, now) if ids else ([], [])
    storage = None
    if optuna_storage is None:
        optuna_storage = default_optuna_storage(tracking_uri)
    if optuna_storage:
        storage = open_optuna_storage(optuna_storage)
    done: set[tuple[str, int]] = set()
    for run, last in sorted(stale, key=lambda item: item[1]):
        fail_run(client, run, last, now, report)
        tags = run.data.tags
        study, number = tags.get("optuna.study_name"), tags.get("optuna.trial_number", "")
        if storage is not None and study and number.isdigit():
            done.add((study, int(number)))
            try:
                fail_trial(storage, study, int(number), f"its run {run.info.run_id} died",
                           report)
            except Exception as err:  # noqa: BLE001 - a study that is not in this storage
                report.say(f"  (trial {number} of study '{study}' not found in "
                           f"{mask(optuna_storage)}: {err})")
    if storage is not None:
        stale_trials(storage, trial_grace, now, done, report)
    report.alive = len(fresh)
    report.say(f"{report.runs} run(s) {'to mark' if dry_run else 'marked'} FAILED, "
               f"{report.trials} trial(s) {'to mark' if dry_run else 'marked'} FAIL; "
               f"{report.alive} RUNNING run(s) still alive left as they are")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m initlab.repair",
        description="Mark FAILED the MLflow runs (and FAIL their Optuna trials) whose process "
                    "died without ending them: RUNNING runs whose heartbeat stopped.")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI",
                                                                 DEFAULT_URI),
                        help="the MLflow store (default: $MLFLOW_TRACKING_URI or %(default)s)")
    parser.add_argument("--experiment", action="append", default=[],
                        help="only this experiment (repeatable; default: all)")
    parser.add_argument("--older-than", type=float, default=60.0, metavar="SECONDS",
                        help="a run is dead when its last heartbeat is older than this and "
                             "than three of its heartbeat intervals (default: %(default)s)")
    parser.add_argument("--optuna-storage", default=None,
                        help="the study storage: an SQLAlchemy URL or journal:PATH (default: "
                             "optuna.db beside a SQLite MLflow store, if there)")
    parser.add_argument("--trial-grace", type=float, default=90.0, metavar="SECONDS",
                        help="fail RUNNING trials whose sweeper's heartbeat is older than this "
                             "(the sweeper's grace_period; default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, change "
                                                               "nothing")
    args = parser.parse_args(argv)
    if args.older_than <= 0 or args.trial_grace <= 0:
        parser.error("--older-than and --trial-grace must be positive numbers of seconds")
    db = sqlite_path(args.tracking_uri)
    if db is not None and not db.exists():  # MLflow would create an empty store there
        parser.error(f"no MLflow store at {db}")
    try:
        repair(args.tracking_uri, args.older_than, args.experiment, args.optuna_storage,
               args.trial_grace, args.dry_run)
    except Exception as err:  # noqa: BLE001 - an unreachable store: one line, no traceback
        print(f"initlab.repair: {mask(str(err))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
