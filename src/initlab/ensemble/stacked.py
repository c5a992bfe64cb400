"""One stacked model out of a group's members: the members' own ``nn.Module``s (built and
initialised by the Trainer path's ``prepare``) stacked parameter by parameter with
``torch.func.stack_module_state``, run by ``vmap`` over ``functional_call`` of one definition of
the net.  Nothing about a net is rewritten: any net ``initlab.nets`` builds works the same way.

The members' losses are their own mean losses; the optimizer is given their *sum*, so each
member's gradient is exactly its own (no term of the sum depends on another member's
parameters), and an elementwise optimizer then takes each member's own step."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from initlab.engine.module import classification_loss


class StackedModel:
    """``params[name]`` has a leading member dimension; ``losses(x, y)`` gives per-member mean
    losses and correct counts, ``x``/``y`` shared (no member dimension) or per member."""

    def __init__(self, models: Sequence[nn.Module], binary: bool, device: torch.device,
                 dtype: torch.dtype) -> None:
        models = [m.to(device=device, dtype=dtype) for m in models]
        self.alone = models[0] if len(models) == 1 else None
        if self.alone is not None:
            # One member trains its own module as is (no functional_call: its bookkeeping
            # would cost a third of a small net's step); params[name] are views onto its
            # parameters with a member dimension of 1, updated in place by the optimizer.
            self.params = {k: p.unsqueeze(0) for k, p in self.alone.named_parameters()}
            self.buffers = {k: b.unsqueeze(0) for k, b in self.alone.named_buffers()}
        else:
            params, buffers = stack_module_state(list(models))
            self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            self.buffers = buffers
        self.base = copy.deepcopy(models[0]).to("meta")  # the definition, without storage
        self.binary, self.size = binary, len(models)
        self.device, self.dtype = device, dtype

        def one(p, b, x, y):
            return classification_loss(functional_call(self.base, (p, b), (x,)), y, self.binary)

        self.one = one  # one member: (its params, its buffers, x, y) -> (mean loss, correct)
        self._vmaps: dict[bool, Callable] = {}

    def losses(self, x: torch.Tensor, y: torch.Tensor,
               per_member: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's (mean loss, correct count) on one shared batch, or with
        ``per_member`` on its own batch (``x``, ``y`` with a leading member dimension)."""
        if self.alone is not None:  # one member: its own module (vmap's bookkeeping would
            # cost as much as the step of a small net)
            x0, y0 = (x[0], y[0]) if per_member else (x, y)
            loss, correct = classification_loss(self.alone(x0), y0, self.binary)
            return loss.unsqueeze(0), correct.unsqueeze(0)
        fn = self._vmaps.get(per_member)
        if fn is None:
            dims = 0 if per_member else None
            fn = self._vmaps[per_member] = torch.vmap(self.one, in_dims=(0, 0, dims, dims))
        return fn(self.params, self.buffers, x, y)

    def leaves(self) -> list[torch.Tensor]:
        """The tensors the optimizer steps (one member: its module's own parameters)."""
        if self.alone is not None:
            return list(self.alone.parameters())
        return list(self.params.values())

    def grad(self, name: str) -> torch.Tensor | None:
        """The gradient of ``params[name]`` (with the member dimension), or None."""
        if self.alone is not None:
            grad = self.alone.get_parameter(name).grad
            return None if grad is None else grad.unsqueeze(0)
        return self.params[name].grad

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s parameters and buffers, named as in its own net's state dict."""
        out = {k: v[i].detach() for k, v in self.params.items()}
        out.update({k: v[i].detach() for k, v in self.buffers.items()})
        return out

    def load_into(self, i: int, model: nn.Module) -> nn.Module:
        """Member ``i``'s current weights copied into ``model`` (its own unstacked net)."""
        dtype = next(model.parameters()).dtype
        model.load_state_dict({k: v.to(dtype) for k, v in self.member_state(i).items()})
        return model
