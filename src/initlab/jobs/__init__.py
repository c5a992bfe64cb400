"""What one ``python train.py`` job does, on top of every other layer: ``train`` (fit and test a
net, tracked) or ``propagation`` (S1's forward pass only).  ``train(cfg)``, ``train_seeds(cfg)``
(``objective_seeds`` seeds, ``jobs.seeds``) and ``objective`` are the entry points."""

from initlab.jobs.seeds import train_seeds
from initlab.jobs.train import objective, train

__all__ = ["objective", "train", "train_seeds"]
