"""Models build the studies' nets and refuse data of the wrong shape before training."""

import pytest
import torch
from torch import nn

from initlab.errors import ConfigError
from initlab.nets import MLP, LeNet, check_fits_data


def test_mlp_layers_follow_the_widths():
    net = MLP(784, 10, hidden=[512] * 4)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [
        (784, 512), (512, 512), (512, 512), (512, 512), (512, 10)]
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_logistic_has_no_hidden_layer():
    assert [type(m) for m in MLP(784, 10, hidden=[])] == [nn.Flatten, nn.Linear]


def test_lenet_on_mnist_shapes():
    assert LeNet(1, 28, 10)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_input_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="expects 784 features.*'digits'.*64 features"):
        check_fits_data(MLP(784, 10), (1, 8, 8), 10, "digits")


def test_output_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="1 outputs.*10 classes"):
        check_fits_data(MLP(64, 1), (1, 8, 8), 10, "digits")
    check_fits_data(MLP(2, 1), (2,), 2, "circles")  # binary: one sigmoid output


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ConfigError, match="available: elu, gelu"):
        MLP(4, 2, activation="swish")
