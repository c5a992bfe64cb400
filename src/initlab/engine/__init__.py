"""Training: the LightningModule, the DataModule and ``train(cfg)``, which only trains and
tests; recording is the tracking layer's job."""
