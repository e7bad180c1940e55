"""The learnable input adaptor (Eq. 5) and the Gaussian/Laplacian ablations."""

import pytest
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml

from speechbrain_datar.nnet.input_adaptor import LearnableInputAdaptor, RandomPerturbation


@pytest.mark.parametrize("strength", [0.005, 0.2])
def test_learnable_adaptor_computes_x_plus_lambda_b_plus_w_conv_x(strength):
    adaptor = LearnableInputAdaptor(strength=strength, kernel_size=3)
    torch.nn.init.normal_(adaptor.conv.weight)
    torch.nn.init.normal_(adaptor.conv.bias)
    feats = torch.randn(2, 40, 16)
    planes = feats.unsqueeze(1)
    expected = planes + strength * (
        adaptor.conv.bias.view(1, 1, 1, 1) + F.conv2d(planes, adaptor.conv.weight, padding=1)
    )
    assert torch.allclose(adaptor(feats), expected.squeeze(1), atol=1e-6)


def test_learnable_adaptor_is_trained():
    adaptor = LearnableInputAdaptor()
    adaptor(torch.randn(2, 10, 8)).square().sum().backward()
    assert adaptor.conv.weight.grad.abs().sum() > 0 and adaptor.conv.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("distribution,std_factor", [("gaussian", 1.0), ("laplacian", 2**0.5)])
def test_perturbations_have_the_configured_scale(distribution, std_factor):
    noise = RandomPerturbation(distribution, scale=0.05)
    x = torch.zeros(200, 100, 16)
    sample = noise(x)
    assert abs(sample.mean().item()) < 1e-3
    assert sample.std().item() == pytest.approx(0.05 * std_factor, rel=0.02)
    kurtosis = (sample**4).mean() / sample.var() ** 2
    assert kurtosis.item() == pytest.approx(3.0 if distribution == "gaussian" else 6.0, rel=0.1)
    assert torch.equal(noise.eval()(x), x)


def test_adaptors_build_from_hyperpyyaml():
    hparams = load_hyperpyyaml(
        """
adaptor: !new:speechbrain_datar.nnet.input_adaptor.LearnableInputAdaptor
    strength: 0.01
ablation: !apply:speechbrain_datar.nnet.input_adaptor.build_input_adaptor
    kind: laplacian
    strength: 0.005
"""
    )
    assert hparams["adaptor"].strength == 0.01
    assert isinstance(hparams["ablation"], RandomPerturbation)
