"""``python signal_in_create_run.py SIGNAL train.py ARGS``: ``train.py`` with a real SIGNAL sent
to the process inside ``MlflowClient.create_run``, after the job's run is in the store and
before ``create_run`` returns: an interrupt during run creation."""

import os
import runpy
import signal
import sys
import time

from mlflow.tracking import MlflowClient

_create_run = MlflowClient.create_run
SIGNUM = getattr(signal, sys.argv[1])


def create_run(self, *args, **kwargs):
    run = _create_run(self, *args, **kwargs)
    if (kwargs.get("tags") or {}).get("initlab.kind") != "sweep":
        print(f"run {run.info.run_id} created: sending {SIGNUM.name}", flush=True)
        os.kill(os.getpid(), SIGNUM)
        time.sleep(1.0)  # Python runs the handler here, inside create_run
    return run


MlflowClient.create_run = create_run
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
