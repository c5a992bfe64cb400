"""Data sets held in memory as tensors: loaders by name (``loaders``), mini-batches by index
(``batches``)."""
