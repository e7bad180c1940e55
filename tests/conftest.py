"""Shared fixtures for the speechbrain-datar tests."""

import pytest
import torch


def available_devices():
    """CPU always; CUDA as well when this machine has it."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def randomise_offsets(model, std=1.0):
    """Gives every offset generator large random output weights, so that offsets are far from zero."""
    from speechbrain_datar.nnet.deformable_attention import OffsetGenerator

    for module in model.modules():
        if isinstance(module, OffsetGenerator):
            torch.nn.init.normal_(module[3].weight, std=std)
    return model
