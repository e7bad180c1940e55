"""Windows whose length the encoder's grid does not divide: no work on padding that is only grid rounding.

DATAR pads only its last patch in eager mode, so a batch of full clips of any length runs without masks;
what it computes must equal the masked path (the same clip padded inside a longer batch) on full windows,
on a padded last window and on a short clip. The encoders without a grid (AST, MBT) are held to the same.
"""

import pytest
import torch

from speechbrain_datar.lobes.models.ast import AST
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.lobes.models.mbt import MBT
from speechbrain_datar.nnet.deformable_attention import DeformableAttention


def datar(preset="micro"):
    torch.manual_seed(0)
    return DATAR(preset=preset, n_mels=64).eval()


def ast():
    torch.manual_seed(0)
    return AST("micro", n_mels=64, target_length=300)  # the batch is within its grid.eval()


def mbt_audio():
    torch.manual_seed(0)  # sized for the longest batch: MBT is batch-invariant up to its positional grid
    return MBT("micro", modalities=("audio",), n_mels=64, audio_frames=300).eval()


ENCODERS = {"DATAR-micro": datar, "AST": ast, "MBT (audio)": mbt_audio}


def embed_alone_and_padded(encoder, feats, pad_to):
    """The clips alone, and each inside a batch padded to ``pad_to`` frames (the masked path)."""
    frames = feats.shape[1]
    padded = torch.nn.functional.pad(feats, (0, 0, 0, pad_to - frames))
    longer = torch.randn(1, pad_to, feats.shape[2])
    with torch.no_grad():
        alone = encoder(feats)
        in_batch = encoder(torch.cat((padded, longer)), torch.tensor([frames / pad_to] * len(feats) + [1.0]))
    return alone, in_batch[: len(feats)]


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("frames", [251, 237])  # a full window off the grid; a clip shorter than it
def test_a_window_off_the_grid_embeds_as_the_masked_path_does(name, frames):
    feats = torch.randn(2, frames, 64, generator=torch.Generator().manual_seed(frames))
    alone, masked = embed_alone_and_padded(ENCODERS[name](), feats, 300)
    assert alone.shape == masked.shape
    assert torch.allclose(alone, masked, atol=1e-5), (alone - masked).abs().max()


@pytest.mark.parametrize("frames", [1001, 1000, 999, 1004, 1024])
def test_full_datar_windows_of_any_length_run_without_masks(frames):
    """Every stage's map holds data at every position: nothing is masked; the map has the columns of the
    exported (grid-padded) graph."""
    model = datar()
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, frames, 64))
    assert out["mask"] is None
    assert out["feature_map"].shape[2] == -(-frames // model.total_stride[1])


def test_datar_tiny_10_s_window_equals_the_masked_path():
    feats = torch.randn(1, 1001, 64, generator=torch.Generator().manual_seed(1))
    alone, masked = embed_alone_and_padded(datar("tiny"), feats, 1024)
    assert torch.allclose(alone, masked, atol=1e-5), (alone - masked).abs().max()


def test_shape_caches_serve_a_second_length_with_its_own_values():
    """Reference points and query positions are kept per shape: a second map size gets its own, and the
    first size's values are unchanged when it comes back."""
    torch.manual_seed(0)
    attn = DeformableAttention(dim=8, num_heads=2, num_groups=2, bias_table_size=(4, 8), offset_stride=2).eval()
    fresh = DeformableAttention(dim=8, num_heads=2, num_groups=2, bias_table_size=(4, 8), offset_stride=2).eval()
    fresh.load_state_dict(attn.state_dict())
    with torch.no_grad():
        for width in (6, 9, 6):
            x = torch.randn(1, 4, width, 8)
            fresh._shape_cache.clear()
            assert torch.equal(attn(x), fresh(x))
    assert {key[1] for key in attn._shape_cache} == {(4, 6), (4, 9), (2, 3), (2, 5)}


def test_a_cached_shape_constant_follows_the_settings_it_depends_on():
    torch.manual_seed(0)
    attn = DeformableAttention(dim=8, num_heads=2, num_groups=2, bias_table_size=(4, 6)).eval()
    x = torch.randn(1, 4, 6, 8)
    with torch.no_grad():
        attn(x)
        attn.grid_convention = "dat_v1"
        first = attn(x)
        attn._shape_cache.clear()
        assert torch.equal(first, attn(x))
