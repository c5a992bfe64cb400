"""Per-layer probes at initialisation and during training (``layerstats``), mean-field
predictions (``meanfield``), histograms, and the Lightning callback that logs them."""
