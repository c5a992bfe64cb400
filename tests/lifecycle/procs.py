"""Real ``train.py`` processes for the lifecycle tests: started in a session of their own (so a
test can Ctrl-C the whole process group as a terminal does, and never leaves one behind), with
the store watched through sqlite3 while they write."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from initlab.tracking.sweep import alive
from conftest import FAST, ROOT, default_sigint, seed_store

HERE = Path(__file__).resolve().parent
FOREVER = [*FAST, "trainer.max_epochs=100000"]


class Child:
    """``python train.py ARGS`` (or ``python WRAPPER ... train.py ARGS``) with its store and
    outputs in ``tmp_path``."""

    def __init__(self, tmp_path: Path, *args: str, wrapper: list[str] = ()) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "mlruns" / "mlflow.db"
        self.store = seed_store(self.db)
        self.log = tmp_path / "child.log"
        cmd = [sys.executable, *wrapper, str(ROOT / "train.py"), *args,
               f"tracking.tracking_uri={self.store}",
               f"tracking.artifact_root={tmp_path}/mlruns/artifacts",
               f"hydra.run.dir={tmp_path}/outputs/run", f"hydra.sweep.dir={tmp_path}/multirun"]
        path = os.pathsep.join(filter(None, [str(HERE), str(HERE.parent),
                                             os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=self._out,
                                     stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=default_sigint, start_new_session=True)
        self.pid = self.proc.pid

    # ---- the store, read with sqlite3 (an MLflow client would race the child's schema) ----
    def query(self, sql: str, *args) -> list[tuple]:
        if not self.db.exists():
            return []
        try:
            with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as con:
                return con.execute(sql, args).fetchall()
        except sqlite3.Error:  # no table yet, or locked
            return []

    def training_runs(self) -> list[str]:
        """Runs that logged a training metric."""
        return [r[0] for r in self.query(
            "SELECT DISTINCT run_uuid FROM metrics WHERE key LIKE 'train/%'")]

    def tag(self, run_id: str, key: str) -> str | None:
        rows = self.query("SELECT value FROM tags WHERE run_uuid = ? AND key = ?", run_id, key)
        return rows[0][0] if rows else None

    def wait_until(self, condition, timeout: float = 240, what: str = "") -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"train.py exited ({self.proc.returncode}) before {what}:\n"
                                     f"{self.output()[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-4000:]}")

    def wait_training(self, runs: int = 1, timeout: float = 240) -> list[str]:
        self.wait_until(lambda: len(self.training_runs()) >= runs, timeout,
                        f"{runs} run(s) training")
        return self.training_runs()

    # ---- processes --------------------------------------------------------------------------
    def group(self) -> list[int]:
        """Live processes of the child's session (zombies excluded)."""
        out = subprocess.run(["pgrep", "-s", str(self.pid)], capture_output=True, text=True)
        return [p for p in map(int, out.stdout.split()) if alive(p)]

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
        os.killpg(self.pid, signal.SIGINT)

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"train.py did not exit within {timeout} s:\n"
                                 f"{self.output()[-4000:]}") from None

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        """Never leave a 100,000-epoch run behind."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._out.close()


def wait_gone(pids, timeout: float = 30) -> list[int]:
    """The pids still alive after up to ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]
