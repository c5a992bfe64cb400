"""One stacked model out of a group's members: the members' own ``nn.Module``s (built and
initialised by the Trainer path's ``prepare``) stacked parameter by parameter with
``torch.func.stack_module_state``, run by ``vmap`` over ``functional_call`` of one definition of
the net.  Nothing about a net is rewritten: any net ``initlab.nets`` builds works the same way.

For the nets of most initialization studies (a ``Sequential`` of ``Flatten``, ``Linear`` and
elementwise activations: every ``initlab.nets.MLP``) the stacked forward is written out layer by
layer instead (``layered_plan``): each ``Linear`` one batched matmul (``torch.baddbmm``) over the
stacked weights, each activation the net's own module applied to all members at once.  It
computes what ``vmap`` computes, without vmap's per-operator batching: for S4's 60 nets of
2-10-5-1 a step then costs a fraction of the vmap one (docs/scale-out.md).

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
from initlab.nets.activations import ACTIVATIONS

# Modules that act on each element alone: applied to [members, batch, features] as they are.
ELEMENTWISE = tuple(ACTIVATIONS.values())


def layered_plan(net: nn.Module) -> list[tuple[str, str | nn.Module]] | None:
    """The steps of ``net``'s forward when it is a ``Sequential`` of ``Flatten`` (from dim 1),
    ``Linear`` and elementwise activations: ("flatten", ""), ("linear", its name) or
    ("apply", the module); None for any other net (the stacked model then uses vmap)."""
    if not isinstance(net, nn.Sequential) or type(net).forward is not nn.Sequential.forward:
        return None
    plan: list[tuple[str, str | nn.Module]] = []
    for name, module in net.named_children():
        if type(module) is nn.Flatten and module.start_dim == 1 and module.end_dim == -1:
            plan.append(("flatten", ""))
        elif type(module) is nn.Linear:
            plan.append(("linear", name))
        elif type(module) in ELEMENTWISE:
            plan.append(("apply", module))
        else:
            return None
    return plan


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
        # Written out layer by layer where the net allows it (no buffers to carry either).
        self.plan = layered_plan(models[0]) if self.alone is None and not self.buffers else None

    def _layered(self, x: torch.Tensor, per_member: bool) -> torch.Tensor:
        """Every member's logits ``[members, batch, outputs]`` through ``self.plan``."""
        h, stacked = x, per_member  # stacked: h has the member dimension first
        for kind, what in self.plan:
            if kind == "flatten":
                h = h.flatten(2) if stacked else h.flatten(1)
            elif kind == "linear":
                weight = self.params[f"{what}.weight"].transpose(1, 2)  # [members, in, out]
                bias = self.params.get(f"{what}.bias")
                if not stacked:  # the shared batch: one broadcast matmul to every member
                    h = torch.matmul(h, weight)
                    h = h if bias is None else h + bias.unsqueeze(1)
                    stacked = True
                elif bias is None:
                    h = torch.bmm(h, weight)
                else:
                    h = torch.baddbmm(bias.unsqueeze(1), h, weight)
            else:
                h = what(h)
        return h if stacked else h.expand(self.size, *h.shape)

    def losses(self, x: torch.Tensor, y: torch.Tensor,
               per_member: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's (mean loss, correct count) on one shared batch, or with
        ``per_member`` on its own batch (``x``, ``y`` with a leading member dimension)."""
        if self.alone is not None:  # one member: its own module (vmap's bookkeeping would
            # cost as much as the step of a small net)
            x0, y0 = (x[0], y[0]) if per_member else (x, y)
            loss, correct = classification_loss(self.alone(x0), y0, self.binary)
            return loss.unsqueeze(0), correct.unsqueeze(0)
        if self.plan is not None:
            return classification_loss(self._layered(x, per_member), y, self.binary)
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
