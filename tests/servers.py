"""Real server processes for tests (mlflow server, mlflow ui): wait for them, stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, what: str,
                 timeout: float = 180) -> None:
    """Until ``url``/health answers 200; a loaded 2-core machine is slow to import MLflow."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer /health within {timeout:g} s:\n"
                               f"{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the process's group (it was started in a session of its own), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def server_env() -> dict[str, str]:
    """The environment for a test's ``mlflow server`` / ``mlflow ui``: MLflow 3 starts a pool of
    job-runner processes (huey consumers) by default, a dozen MLflow imports that take CPU
    from the tests and that nothing here uses."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
