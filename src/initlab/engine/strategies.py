"""DDP on one machine that listens on no interface but loopback.

Lightning's DDP meets its processes through torch's TCP store, whose server listens on every
interface (torch's ``TCPStore`` binds the wildcard address whatever ``MASTER_ADDR`` says), and
gloo picks the interface of the host name.  Here the processes meet through a file (torch's
``FileStore``: ``init_method="file://..."``), and gloo / NCCL exchange their data over ``lo``.
Naming an address (``rendezvous_address``, or ``MASTER_ADDR`` in the environment) gives
Lightning's own TCP rendezvous instead, for several machines.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import DDPStrategy


class LoopbackDDPStrategy(DDPStrategy):
    def __init__(self, rendezvous_address: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rendezvous_address = rendezvous_address or os.environ.get("MASTER_ADDR")
        # Made in the launching process; spawned processes receive the path with the strategy.
        self.rendezvous_dir = tempfile.mkdtemp(prefix="initlab-ddp-")
        atexit.register(shutil.rmtree, self.rendezvous_dir, ignore_errors=True)

    def setup_distributed(self) -> None:
        if self.rendezvous_address is not None:
            os.environ["MASTER_ADDR"] = self.rendezvous_address
        elif not torch.distributed.is_initialized():
            self.set_world_ranks()
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
            # One file per launch: fit, validate and test each spawn their processes (a file
            # that served one rendezvous cannot serve another).
            stage = self.lightning_module.trainer.state.fn
            meeting = Path(self.rendezvous_dir) / f"rendezvous-{stage.value if stage else 'run'}"
            torch.distributed.init_process_group(
                "nccl" if self.root_device.type == "cuda" else "gloo",
                init_method=meeting.as_uri(), rank=self.global_rank, world_size=self.world_size)
        super().setup_distributed()  # Lightning's set-up; the process group exists already
