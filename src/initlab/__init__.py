"""initlab: experiments on neural-network weight initialization (Hydra + Lightning + MLflow)."""

__version__ = "0.1.0"
