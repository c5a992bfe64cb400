"""One LightningDataModule for every data set: whole tensors in memory, batches by index.

A data set is loaded once (``data.loaders.load``), split by ``split_seed`` (so every run,
whatever its seed, sees the same train/val/test split) and served as mini-batches gathered with
pre-shuffled indices (``data.batches``).  The shuffle order depends on ``shuffle_seed`` (the
run's seed) only, so nets with different inits but one seed are fed the same batches (S1).
Once attached to a trainer the tensors live on its root device, and under DDP each rank takes
its own share of every epoch, as with a ``DistributedSampler``.  With ``standardize`` every
feature (pixel, channel, coordinate) is shifted and scaled by the training split's mean and std,
the same statistics for every split (``standardize_splits``).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import torch

from initlab.data import loaders
from initlab.data.batches import IndexSampler, TensorBatches
from initlab.errors import ConfigError


Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


def standardize_splits(splits: Splits) -> tuple[Splits, torch.Tensor, torch.Tensor]:
    """Every split's inputs as (x - mean) / std, per feature, with the mean and (population)
    std of the *training* split only, so nothing of val or test leaks into the inputs.  A
    feature constant on the training split (MNIST's border pixels) is centred, not scaled.
    Returns the new splits and the statistics (shape of one sample)."""
    x_train = splits["train"][0]
    if len(x_train) == 0:
        raise ConfigError("dataset.standardize needs a training split with samples",
                          key="dataset.standardize", value=True)
    std, mean = torch.std_mean(x_train, dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    out = {name: ((xs - mean) / std, ys) for name, (xs, ys) in splits.items()}
    return out, mean, std


class TensorDataModule(L.LightningDataModule):
    """Train/val/test splits of one data set (``datasets.LOADERS[name]``), held as tensors."""

    def __init__(self, name: str, batch_size: int | None = 100, *, shape: list[int],
                 num_classes: int, num_outputs: int | None = None,
                 in_features: int | None = None, val_size: int = 0,
                 test_size: int = 0, split_seed: int = 0, shuffle_seed: int = 0,
                 drop_last: bool = False, replacement: bool = False,
                 steps_per_epoch: int | None = None, eval_batch_size: int | None = 1000,
                 standardize: bool = False, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        if batch_size is not None and batch_size <= 0:
            raise ConfigError(f"dataset.batch_size must be positive or null, got {batch_size}")
        self.name, self.batch_size = name, batch_size
        self.shape, self.num_classes = tuple(shape), int(num_classes)
        self.num_outputs = int(num_outputs or num_classes)
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed
        self.shuffle_seed, self.drop_last, self.replacement = shuffle_seed, drop_last, replacement
        self.steps_per_epoch, self.eval_batch_size = steps_per_epoch, eval_batch_size
        if not isinstance(standardize, bool):
            raise ConfigError(f"dataset.standardize must be true or false, got {standardize!r}",
                              key="dataset.standardize", value=standardize)
        self.standardize = standardize
        self.options = dict(options or {})
        # The training split's per-feature statistics, once standardised (None otherwise).
        self.feature_mean: torch.Tensor | None = None
        self.feature_std: torch.Tensor | None = None
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._loaders: dict[str, TensorBatches] = {}

    # ---- loading and splitting -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = loaders.load(self.name, **self.options)
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
        splits = {"train": (x, y), "val": (x_val, y_val), "test": (x_test, y_test)}
        if self.standardize:
            splits, self.feature_mean, self.feature_std = standardize_splits(splits)
        self.splits = {k: (xs.contiguous(), ys) for k, (xs, ys) in splits.items()}

    def probe_batch(self, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed batch of training inputs (the first ``size`` after the split shuffle)."""
        self.setup()
        x, y = self.splits["train"]
        return x[:size], y[:size]

    # ---- batches ---------------------------------------------------------------------------
    def _placement(self) -> tuple[torch.device, int, int]:
        """(device, rank, world size) of the trainer this module is attached to (Lightning sets
        ``self.trainer`` before it asks for loaders); the CPU and one rank when used alone."""
        if self.trainer is None:
            return torch.device("cpu"), 0, 1
        return self.trainer.strategy.root_device, self.trainer.global_rank, self.trainer.world_size

    def _batches(self, split: str) -> TensorBatches:
        device, rank, world = self._placement()
        key = f"{split}@{device}:{rank}/{world}"
        if key not in self._loaders:
            self.setup()
            x, y = (t.to(device) for t in self.splits[split])
            if split == "train":
                sampler = IndexSampler(
                    len(x), self.batch_size, shuffle=True, seed=self.shuffle_seed,
                    drop_last=self.drop_last, replacement=self.replacement,
                    steps_per_epoch=self.steps_per_epoch, rank=rank, world_size=world)
            else:
                sampler = IndexSampler(len(x), self.eval_batch_size, rank=rank, world_size=world)
            self._loaders[key] = TensorBatches(x, y, sampler)
        return self._loaders[key]

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train")

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val")

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test")
