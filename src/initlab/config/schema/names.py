"""What the code offers, spelled out so the schema needs no torch (kept in step with the
registries by tests/config)."""

from __future__ import annotations

SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range

INIT_FAMILIES = ("zeros", "constant", "normal", "truncated_normal", "uniform", "xavier", "he",
                 "lecun", "orthogonal", "default", "random", "lsuv")
BIAS_KINDS = ("default", "zeros", "constant", "normal")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "leaky_relu", "elu", "selu", "gelu")
GAIN_NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                       "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu",
                       "leaky_relu", "selu")
DATASETS = ("mnist5k", "digits", "circles", "moons", "gaussian", "mnist", "fashion_mnist",
            "cifar10")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed",
              "bf16-true", "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16", 64, 32, 16)
# Every metric a training run ends with (what ``optimized_metric`` or a callback's ``monitor``
# may name): ``ClassifierModule.METRICS``.
METRICS = frozenset({f"{split}/{stat}" for split in ("train", "val", "test")
                     for stat in ("loss", "acc")} | {"train/loss_step", "lr", "diverged"})


