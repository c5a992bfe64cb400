"""The ensemble engine: a sweep's compatible jobs (differing only in ``init.*`` and ``seed``)
trained in one process as one stacked model (``torch.func.stack_module_state`` +
``functional_call`` + ``vmap``), each member recorded as an ordinary MLflow run.

A separate, explicit engine beside ``initlab.engine`` (the Lightning path): it refuses what it
cannot reproduce exactly (``checks``).  Only the ensemble launcher plugin imports it."""
