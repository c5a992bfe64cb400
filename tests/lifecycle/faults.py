"""Faults for the lifecycle tests, loaded by the child ``train.py`` (``tests/lifecycle`` is on
its PYTHONPATH): a Lightning callback whose thread dies, and a Hydra callback whose thread dies
in a multirun's main process."""

import threading

import lightning.pytorch as L
from hydra.experimental.callback import Callback


def _die() -> None:
    raise RuntimeError("boom: raised in a thread by tests/lifecycle/faults.py")


class ThreadDiesAtStep(L.Callback):
    """At optimizer step ``step``, starts a thread that raises."""

    def __init__(self, step: int = 3) -> None:
        self.step, self.started = step, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.started:
            self.started = True
            threading.Thread(target=_die, name="faulty-helper").start()


class ThreadDiesInMultirun(Callback):
    """Hydra callback: a thread of the multirun's main process dies before the first job."""

    def on_job_start(self, config, **kwargs) -> None:
        if not getattr(self, "done", False):
            self.done = True
            thread = threading.Thread(target=_die, name="faulty-sweep-helper")
            thread.start()
            thread.join()
