"""The chunking rule: how many members of a group train at once.

Per member, the stacked step holds its parameters four times (weights, gradients and up to two
optimizer moments) and, per layer, the activations of one training batch twice (forward values
kept for the backward pass, and their gradients), plus its batch of inputs when members draw
their own batches.  ``members_per_chunk`` divides the budget (``hydra.launcher.memory_budget_mb``)
by that estimate (the smallest device's budget: ``initlab.ensemble.placement``); a group larger
than the result trains in several chunks, each exactly as its members would alone, placed on
the devices by ``initlab.ensemble.placement.plan``."""

from __future__ import annotations

import torch
from torch import nn


def member_bytes(model: nn.Module, batch: int, in_features: int, dtype: torch.dtype) -> int:
    item = torch.empty((), dtype=dtype).element_size()
    params = sum(p.numel() for p in model.parameters())
    widths = sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    return item * (4 * params + 2 * 2 * batch * widths + batch * in_features)


def members_per_chunk(per_member: int, budget_mb: float, cap: int | None = None) -> int:
    n = max(1, int(budget_mb * 2**20 // max(per_member, 1)))
    return min(n, cap) if cap else n
