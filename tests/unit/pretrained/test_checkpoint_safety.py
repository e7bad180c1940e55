"""A checkpoint that would run code when unpickled is refused before anything in it runs."""

import os

import pytest
import torch

from speechbrain_datar.lobes.models.datar import DATAR


# ------------------------------------------------------------------ item 1: checkpoints cannot run code
class _Payload:
    """Unpickling this creates the folder ``marker``: what a crafted checkpoint could do with any code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_unopened(tmp_path):
    from dat_v1_reference import make_dat_state_dict

    from speechbrain_datar.pretrained.checkpoint_import import CheckpointLayoutError, init_from

    marker = tmp_path / "code_ran"
    path = str(tmp_path / "dat_tiny_in1k.pth")
    torch.save({"model": make_dat_state_dict(), "payload": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointLayoutError, match=r"holds posix\.mkdir, not only tensors") as error:
        init_from(DATAR("tiny"), path)
    assert "weights_only=False" in str(error.value) and "weights.pth" in str(error.value)
    assert not marker.exists()
    # the same weights without the payload import as before
    clean = str(tmp_path / "clean.pth")
    torch.save({"model": make_dat_state_dict()}, clean)
    assert init_from(DATAR("tiny"), clean).initialised == ["input_adaptor.conv.bias", "input_adaptor.conv.weight"]
