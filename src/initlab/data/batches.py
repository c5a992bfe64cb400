"""Mini-batches of in-memory tensors, by index: no DataLoader workers, no per-sample collate.

``IndexSampler`` yields one index tensor per mini-batch, with ``DistributedSampler``'s contract:
``set_epoch`` reshuffles (Lightning calls it through ``loader.sampler.set_epoch`` at every epoch,
as for a DataLoader), and with ``world_size`` ranks each rank takes a disjoint stride of one
shared permutation, padded by wrapping around so every rank gets ``ceil(n / world_size)``
samples (or, with ``drop_last``, truncated to ``floor``).  ``TensorBatches`` gathers each
mini-batch with one ``index_select`` and is resumable mid-epoch (``state_dict`` /
``load_state_dict``, which Lightning saves in its checkpoints).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch


class IndexSampler:
    """Index tensors of the mini-batches of one epoch.

    ``batch_size`` None means the full (per-rank) set.  ``replacement`` draws each batch with
    replacement (S1).  ``steps_per_epoch`` fixes the number of batches an epoch yields, cycling
    through the permutation (full-batch gradient descent repeats the batch: S4's 15,000 steps
    are 30 epochs of 500)."""

    def __init__(self, n: int, batch_size: int | None, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, replacement: bool = False,
                 steps_per_epoch: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size = int(n), batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.replacement, self.steps_per_epoch = replacement, steps_per_epoch
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def per_rank(self) -> int:
        """Samples each rank sees per pass, as ``DistributedSampler`` counts them."""
        if self.world_size == 1:
            return self.n
        return self.n // self.world_size if self.drop_last else math.ceil(self.n / self.world_size)

    def __len__(self) -> int:
        if self.steps_per_epoch:
            return int(self.steps_per_epoch)
        n = self.per_rank
        if n == 0:
            return 0
        if self.batch_size is None or self.batch_size >= n:
            return 0 if (self.drop_last and self.batch_size and self.batch_size > n) else 1
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def shard(self) -> torch.Tensor | None:
        """This rank's indices for the epoch, in order (None: the whole set, unshuffled)."""
        if self.world_size == 1 and not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        total = self.per_rank * self.world_size
        if total > self.n:  # pad by wrapping around, like DistributedSampler
            order = torch.cat([order, order[: total - self.n]])
        return order[:total][self.rank::self.world_size]

    def __iter__(self) -> Iterator[torch.Tensor | None]:
        """One index tensor per batch (None: the whole set as one batch)."""
        steps = len(self)
        if self.replacement:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            bs = self.batch_size or self.per_rank
            for _ in range(steps):
                yield torch.randint(self.n, (bs * self.world_size,), generator=g)[self.rank::self.world_size]
            return
        if self.world_size == 1 and (self.batch_size is None or self.batch_size >= self.n):
            yield from (None for _ in range(steps))  # the whole set: its order changes nothing
            return
        order = self.shard()
        if order is None:
            order = torch.arange(self.n)
        bs = self.batch_size or len(order)
        for step in range(steps):
            start = (step * bs) % max(len(order), 1)
            yield order[start:start + bs]


class TensorBatches:
    """Iterable of ``(x, y)`` mini-batches of ``x`` and ``y`` as ``sampler`` orders them.

    Holds ``sampler`` and ``batch_sampler`` attributes as a DataLoader does, so Lightning's
    per-epoch ``set_epoch`` reaches the sampler; ``state_dict`` records how far into the epoch
    iteration went."""

    batch_sampler = None  # batches come from ``sampler`` itself (DataLoader's attribute contract)

    def __init__(self, x: torch.Tensor, y: torch.Tensor, sampler: IndexSampler) -> None:
        self.x, self.y, self.sampler = x, y, sampler
        self._served = 0
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        skip = 0
        if self._resume is not None and self._resume[0] == self.sampler.epoch:
            skip = self._resume[1]
        self._resume = None
        self._served = skip
        for i, idx in enumerate(self.sampler):
            if i < skip:
                continue
            self._served += 1
            if idx is None:
                yield self.x, self.y
            else:
                idx = idx.to(self.x.device, non_blocking=True)
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.sampler.epoch, "served": self._served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = (int(state["epoch"]), int(state["served"]))
