"""Shared fixtures for the speechbrain-datar tests."""

import glob
import os
import signal
import subprocess
import time

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


def kill_after_first_checkpoint(cmd, cwd, output_folder, timeout=300):
    """Starts a training command and kills it (SIGKILL) once its first complete checkpoint exists.

    Returns the paths of the complete checkpoints' folders at that moment.
    """
    process = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    completed = os.path.join(output_folder, "save", "CKPT+*", "CKPT.yaml")
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and not glob.glob(completed):
            assert process.poll() is None, "training ended before it could be interrupted"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return [os.path.dirname(path) for path in glob.glob(completed)]
