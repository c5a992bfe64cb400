"""One LightningDataModule for every data set: whole tensors in memory, batches by slicing.

A data set that fits in memory is loaded once (``datasets.load``), split by ``split_seed`` (so
every run, whatever its seed, sees the same train/val/test split) and served as mini-batches
sliced with pre-shuffled indices: no per-sample ``__getitem__``, no collate.  The shuffle order
depends on ``shuffle_seed`` (the run's seed) only, so nets with different inits but one seed are
fed the same batches (S1).  Training batches come in blocks of ``steps_per_block`` mini-batches,
one Lightning step each, so that Lightning's per-step work is paid once per block.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as L
import torch

from initlab import datasets
from initlab.errors import ConfigError


class TensorBatches:
    """Iterable of ``(x, y)`` mini-batches over in-memory tensors, or of blocks of them.

    ``batch_size`` None means full batch.  ``replacement`` draws each batch with replacement
    (S1: "batch 128 drawn with replacement").  ``steps_per_epoch`` fixes the number of batches an
    epoch yields (full-batch gradient descent repeats the batch: S4's 15,000 steps become 30
    epochs of 500 instead of 15,000 one-step epochs).  Under DDP each rank takes its stride of a
    permutation shared by all ranks.

    With ``steps_per_block`` k, each item is a *block* ``(xs, ys)``: tuples of up to k
    consecutive mini-batches (one optimizer step each; see ``ClassifierModule.training_step``),
    gathered with one ``index_select`` and split into views.  The mini-batches, and their order,
    are exactly those of the unblocked iteration."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None, *,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 replacement: bool = False, steps_per_epoch: int | None = None,
                 steps_per_block: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.replacement, self.steps_per_epoch = replacement, steps_per_epoch
        self.steps_per_block = int(steps_per_block) if steps_per_block else None
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def _per_rank(self) -> int:
        return len(self.x) // self.world_size

    def steps(self) -> int:
        """Mini-batches (optimizer steps) per epoch."""
        if self.steps_per_epoch:
            return int(self.steps_per_epoch)
        n = self._per_rank()
        if self.batch_size is None or self.batch_size >= n:
            return 1 if (n > 0 and not (self.drop_last and self.batch_size and self.batch_size > n)) else 0
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        steps = self.steps()
        return -(-steps // self.steps_per_block) if self.steps_per_block else steps

    def _indices(self) -> Iterator[torch.Tensor | None]:
        """The next epoch's mini-batches as index tensors (None: the whole set)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        n = len(self.x)
        steps = self.steps()
        if self.batch_size is None and self.world_size == 1:
            yield from (None for _ in range(steps))
            return
        bs = self.batch_size or self._per_rank()
        if self.replacement:
            for _ in range(steps):
                idx = torch.randint(n, (bs * self.world_size,), generator=g)[self.rank::self.world_size]
                yield idx.to(self.x.device)
            return
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order[: self._per_rank() * self.world_size][self.rank::self.world_size]
        order = order.to(self.x.device)
        for step in range(steps):
            start = (step * bs) % max(len(order), 1)
            yield order[start:start + bs]

    def _gather(self, idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if idx is None:
            return self.x, self.y
        return self.x.index_select(0, idx), self.y.index_select(0, idx)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        indices = self._indices()
        if not self.steps_per_block:
            yield from (self._gather(idx) for idx in indices)
            return
        while block := list(itertools.islice(indices, self.steps_per_block)):
            if block[0] is None:  # full batch, repeated
                yield (self.x,) * len(block), (self.y,) * len(block)
                continue
            x, y = self._gather(torch.cat(block))
            sizes = [len(idx) for idx in block]
            yield x.split(sizes), y.split(sizes)


def as_block(batch: Any) -> tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]:
    """A training batch as a block ``(xs, ys)`` of mini-batches, one optimizer step each: a
    block of ``TensorBatches`` as it is, a plain ``(x, y)`` batch as a block of one."""
    xs, ys = batch[0], batch[1]
    return (xs, ys) if isinstance(xs, (tuple, list)) else ((xs,), (ys,))


class TensorDataModule(L.LightningDataModule):
    """Train/val/test splits of one data set (``datasets.LOADERS[name]``), held as tensors."""

    def __init__(self, name: str, batch_size: int | None = 100, *, shape: list[int],
                 num_classes: int, num_outputs: int | None = None,
                 in_features: int | None = None, val_size: int = 0,
                 test_size: int = 0, split_seed: int = 0, shuffle_seed: int = 0,
                 drop_last: bool = False, replacement: bool = False,
                 steps_per_epoch: int | None = None, steps_per_block: int = 1,
                 eval_batch_size: int | None = 1000,
                 device_resident: bool = True, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        if batch_size is not None and batch_size <= 0:
            raise ConfigError(f"dataset.batch_size must be positive or null, got {batch_size}")
        self.name, self.batch_size = name, batch_size
        self.shape, self.num_classes = tuple(shape), int(num_classes)
        self.num_outputs = int(num_outputs or num_classes)
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed
        self.shuffle_seed, self.drop_last, self.replacement = shuffle_seed, drop_last, replacement
        self.steps_per_epoch, self.eval_batch_size = steps_per_epoch, eval_batch_size
        # Optimizer steps per Lightning training step (ClassifierModule.training_step): a speed
        # knob only, the mini-batches and the arithmetic are the same for every value.
        if int(steps_per_block) < 1:
            raise ConfigError(f"dataset.steps_per_block must be at least 1, got {steps_per_block}")
        self.steps_per_block = int(steps_per_block)
        self.device_resident = device_resident
        self.options = dict(options or {})
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._loaders: dict[str, TensorBatches] = {}

    # ---- loading and splitting -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = datasets.load(self.name, **self.options)
        g = torch.Generator().manual_seed(self.split_seed)
        x, y = raw.x, raw.y
        perm = torch.randperm(len(x), generator=g)
        x, y = x[perm], y[perm]
        if raw.x_test is None:
            if self.test_size <= 0 or self.test_size >= len(x):
                raise ConfigError(f"dataset.test_size must be in 1..{len(x) - 1} for {self.name}")
            x_test, y_test, x, y = x[: self.test_size], y[: self.test_size], x[self.test_size:], y[self.test_size:]
        else:
            x_test, y_test = raw.x_test, raw.y_test
        if raw.x_val is None:
            if self.val_size < 0 or self.val_size >= len(x):
                raise ConfigError(f"dataset.val_size must be in 0..{len(x) - 1} for {self.name}")
            x_val, y_val, x, y = x[: self.val_size], y[: self.val_size], x[self.val_size:], y[self.val_size:]
        else:
            x_val, y_val = raw.x_val, raw.y_val
        if tuple(x.shape[1:]) != self.shape:
            raise ConfigError(
                f"dataset {self.name!r} yields samples of shape {tuple(x.shape[1:])}, but its "
                f"config says shape={list(self.shape)}"
            )
        self.splits = {"train": (x.contiguous(), y), "val": (x_val.contiguous(), y_val),
                       "test": (x_test.contiguous(), y_test)}

    def probe_batch(self, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed batch of training inputs (the first ``size`` after the split shuffle)."""
        self.setup()
        x, y = self.splits["train"]
        return x[:size], y[:size]

    # ---- batches ---------------------------------------------------------------------------
    def _device(self) -> torch.device:
        trainer = getattr(self, "_trainer", None)
        if self.device_resident and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _batches(self, split: str) -> TensorBatches:
        device = self._device()
        key = f"{split}@{device}"
        if key not in self._loaders:
            self.setup()
            x, y = (t.to(device) for t in self.splits[split])
            trainer = getattr(self, "_trainer", None)
            rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
            if split == "train":
                self._loaders[key] = TensorBatches(
                    x, y, self.batch_size, shuffle=True, seed=self.shuffle_seed,
                    drop_last=self.drop_last, replacement=self.replacement,
                    steps_per_epoch=self.steps_per_epoch, steps_per_block=self.steps_per_block,
                    rank=rank, world_size=world)
            else:
                self._loaders[key] = TensorBatches(x, y, self.eval_batch_size,
                                                   rank=rank, world_size=world)
        return self._loaders[key]

    def train_dataloader(self) -> TensorBatches:
        """Blocks of ``steps_per_block`` mini-batches (see ``TensorBatches``)."""
        return self._batches("train")

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val")

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test")
