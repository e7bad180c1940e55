"""Coarse-to-fine training: compression methods, phase transitions, resuming across a transition."""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_datar.lobes.features import Fbank, TimePooling
from speechbrain_datar.lobes.models.ast import AST
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.nnet.patch_embedding import bilinear_resize_matrix, resize_patch_weights
from speechbrain_datar.training.coarse_to_fine import CoarseToFineSchedule

OPTIONS = {"sample_rate": 16000, "n_mels": 128, "n_fft": 512, "win_length": 25, "hop_length": 10}


def schedule(compression, factor=4, features=None, encoder=None):
    phases = [{"factor": factor, "epochs": 1}, {"factor": 1, "epochs": 1}]
    return CoarseToFineSchedule(phases, compression, features=features, encoder=encoder)


def test_fshift_multiplies_the_frame_shift():
    fbank = Fbank(**OPTIONS)
    s = schedule("fshift", features=fbank)
    s.enter(0)
    wav = torch.randn(2, 16000)
    feats = fbank(wav)
    assert feats.shape == (2, 16000 // 640 + 1, 128)  # 40 ms shift
    s.enter(1)
    assert fbank(wav).shape == (2, 101, 128)
    assert s.frames(1001) == 1001
    assert torch.equal(fbank(wav), Fbank(**OPTIONS)(wav))  # full resolution is SpeechBrain's Fbank


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_pooling_reduces_time_by_the_factor(kind):
    feats = torch.randn(2, 101, 8)
    pooled = TimePooling(4, kind)(feats)
    assert pooled.shape == (2, 26, 8)
    reduce = torch.mean if kind == "avg" else torch.amax
    assert torch.allclose(pooled[:, 3], reduce(feats[:, 12:16], dim=1))
    assert torch.allclose(pooled[:, -1], reduce(feats[:, 100:], dim=1))  # the partial window
    fbank = Fbank(**dict(OPTIONS, n_mels=8))
    s = schedule(f"{kind}pool", features=fbank)
    s.enter(0)
    wav = torch.randn(2, 16000)
    assert fbank(wav).shape == (2, 26, 8) and s.frames(1001) == 251
    assert torch.equal(fbank(wav), TimePooling(4, kind)(Fbank(**dict(OPTIONS, n_mels=8))(wav)))


def test_patch_method_widens_datar_and_ast_patches():
    datar = DATAR("micro")
    s = schedule("patch", encoder=datar)
    s.enter(0)
    assert datar.patch_size == (4, 16) and datar.patch_proj.weight.shape[-2:] == (4, 16)
    with torch.no_grad():
        out = datar.forward_features(torch.randn(1, 1024, 128))
    assert out["feature_map"].shape[1:3] == (4, 8)  # 1024 / (16 * 8) time tokens at the last stage
    s.enter(1)
    assert datar.patch_size == (4, 4) and datar.patch_proj.kernel_size == (4, 4)

    ast = AST("micro", target_length=1024)
    s = schedule("patch", encoder=ast)
    s.enter(0)
    assert ast.patch_embed.kernel_size == (16, 64) and ast.patch_embed.stride == (10, 40)
    with torch.no_grad():
        tokens, _ = ast.forward_features(torch.randn(1, 1024, 128))
    assert tokens.shape[1] == 2 + 12 * ((1024 - 64) // 40 + 1)


@pytest.mark.parametrize("compression", ["fshift", "avgpool"])
def test_ast_positional_grid_follows_the_compressed_length(compression):
    ast = AST("micro", target_length=1024)
    original = ast.pos_embed.detach().clone()
    s = schedule(compression, encoder=ast)
    s.enter(0)
    assert ast.t_dim == (256 - 16) // 10 + 1 and ast.pos_embed.shape[1] == 2 + 12 * ast.t_dim
    with torch.no_grad():
        assert torch.isfinite(ast(torch.randn(1, 256, 128))).all()
    s.enter(1)
    assert ast.pos_embed.shape == original.shape and ast.t_dim == 101


def test_interpolating_to_the_same_grid_is_the_identity():
    ast = AST("micro", target_length=500).eval()
    before = ast.pos_embed.detach().clone()
    feats = torch.randn(1, 500, 128)
    with torch.no_grad():
        expected = ast(feats)
        ast.set_time_grid(target_length=500)
        assert torch.equal(ast.pos_embed, before)
        assert torch.equal(ast(feats), expected)
    datar = DATAR("micro").eval()
    with torch.no_grad():
        expected = datar(feats)
        CoarseToFineSchedule([{"factor": 1, "epochs": 1}], "patch", encoder=datar).enter(0)
        assert torch.equal(datar(feats), expected)


def test_pi_resize_keeps_patch_embedding_outputs_of_resized_patches():
    conv = torch.nn.Conv2d(1, 6, (4, 4), (4, 4))
    wide = resize_patch_weights(conv.weight.detach(), (4, 12), "pi")
    patches = torch.randn(5, 1, 4, 4)
    resized = F.interpolate(patches, size=(4, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(F.conv2d(patches, conv.weight), F.conv2d(resized, wide), atol=1e-5)
    bilinear = resize_patch_weights(conv.weight.detach(), (4, 12), "bilinear")
    assert not torch.allclose(F.conv2d(patches, conv.weight), F.conv2d(resized, bilinear), atol=1e-2)
    matrix = bilinear_resize_matrix((4, 4), (4, 12))
    assert torch.allclose(matrix.float() @ patches[0, 0].reshape(-1), resized[0, 0].reshape(-1), atol=1e-6)


def test_schedule_rejects_bad_phases():
    with pytest.raises(ValueError, match="last phase"):
        CoarseToFineSchedule([{"factor": 4, "epochs": 2}])
    with pytest.raises(ValueError, match="compression"):
        CoarseToFineSchedule([{"factor": 1, "epochs": 2}], "crop")
    assert not CoarseToFineSchedule(None).enabled
