"""Test-only Lightning callbacks, named by ``+callbacks.<name>._target_=hooks.<Class>``."""

import json
from collections import Counter
from pathlib import Path

import lightning.pytorch as L

COUNTED = ("on_train_batch_start", "on_train_batch_end", "on_before_backward",
           "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
           "on_train_epoch_start", "on_train_epoch_end", "on_validation_start",
           "on_validation_epoch_end", "on_validation_batch_end", "on_test_batch_end",
           "on_save_checkpoint")


class CountingHooks(L.Callback):
    """Counts every hook call and records the global step at each ``on_train_batch_end`` and
    each validation; writes it all to ``path`` (JSON) when the process's fit and test end."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.counts: Counter = Counter()
        self.steps: list[int] = []
        self.val_steps: list[int] = []
        self.batch_sizes: list[int] = []
        self.dtypes: set[str] = set()

    def _count(name):
        def hook(self, trainer, *args, **kwargs):
            self.counts[name] += 1
            if name == "on_train_batch_end":
                self.steps.append(trainer.global_step)
                self.batch_sizes.append(len(args[2][1]))
            if name == "on_validation_start" and not trainer.sanity_checking:
                self.val_steps.append(trainer.global_step)
            if name == "on_train_batch_start":
                self.dtypes.add(str(args[1][0].dtype))
        return hook

    for _name in COUNTED:
        locals()[_name] = _count(_name)
    del _name, _count

    def on_test_end(self, trainer, pl_module) -> None:
        self.path.write_text(json.dumps({
            "counts": dict(self.counts), "steps": self.steps, "val_steps": self.val_steps,
            "batch_sizes": self.batch_sizes, "global_step": trainer.global_step,
            "dtypes": sorted(self.dtypes),
            "param_dtypes": sorted({str(p.dtype) for p in pl_module.parameters()})}))


def read(path) -> dict:
    return json.loads(Path(path).read_text())


class SeenSamples(L.Callback):
    """Records, per rank, a digest of every training sample of the first epoch (its bytes), and
    the number of optimizer steps; writes ``<prefix><rank>.json`` when training ends."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seen: list[str] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 0:
            self.seen += [digest(row) for row in batch[0]]

    def on_train_end(self, trainer, pl_module) -> None:
        Path(f"{self.prefix}{trainer.global_rank}.json").write_text(json.dumps(
            {"seen": self.seen, "global_step": trainer.global_step,
             "world_size": trainer.world_size}))


def digest(row) -> str:
    import hashlib

    return hashlib.sha1(row.detach().cpu().float().numpy().tobytes()).hexdigest()


class ListeningSockets(L.Callback):
    """Records, on every rank, the local addresses of the TCP sockets this process listens on
    (from /proc/net/tcp and tcp6, matched to the process's own socket inodes)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0 and trainer.current_epoch == 0:
            Path(f"{self.prefix}{trainer.global_rank}.json").write_text(
                json.dumps(listening_addresses()))


def listening_addresses() -> list[str]:
    import os

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(_address(fields[1]))
    return found


def _address(hex_address: str) -> str:
    import ipaddress

    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:  # four little-endian 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        ip = ip.ipv4_mapped or ip
    return f"{ip}:{int(port, 16)}"
