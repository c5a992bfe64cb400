"""A callback that raises mid-training: makes a run fail for real, to test FAILED status."""

import lightning.pytorch as L


class RaiseAtStep(L.Callback):
    def __init__(self, step: int = 3, exception: str = "RuntimeError") -> None:
        self.step, self.exception = step, exception

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise {"RuntimeError": RuntimeError, "KeyboardInterrupt": KeyboardInterrupt}[
                self.exception]("boom: raised by tests/failing.py")
