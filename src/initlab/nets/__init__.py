"""The networks of the studies, each a plain ``nn.Module`` that declares the input it expects
(``accepts``), so a mismatch with the data set is caught before training.

``NETS`` is the registry that rebuilds a net from plain values (a run's recorded params), never
from a stored ``_target_``."""

from initlab.nets.activations import ACTIVATIONS, make_activation
from initlab.nets.fit import check_fits_data
from initlab.nets.lenet import LeNet
from initlab.nets.mlp import MLP

NETS = {"MLP": MLP, "LeNet": LeNet}

__all__ = ["ACTIVATIONS", "LeNet", "MLP", "NETS", "check_fits_data", "make_activation"]
