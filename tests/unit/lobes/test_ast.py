"""The AST baseline: the paper's configuration, masking, positional embeddings."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from speechbrain_datar.lobes.models.ast import AST


def test_paper_configuration_counts_103_4_g_macs():
    model = AST("base").eval()
    assert (model.f_dim, model.t_dim) == (12, 101)
    assert model.pos_embed.shape == (1, 12 * 101 + 2, 768)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        emb = model(torch.randn(1, 1024, 128))
    assert emb.shape == (1, 1, 768)
    assert counter.get_total_flops() / 2e9 == pytest.approx(103.4, abs=0.1)


def test_embedding_is_the_mean_of_cls_and_distillation_outputs():
    model = AST("micro", target_length=200).eval()
    feats = torch.randn(2, 200, 128)
    with torch.no_grad():
        tokens, _ = model.forward_features(feats)
        assert torch.allclose(model(feats)[:, 0], (tokens[:, 0] + tokens[:, 1]) / 2)


@pytest.mark.parametrize("short", [5, 16, 99, 150])
def test_clip_output_does_not_depend_on_its_batch(short):
    model = AST("micro", target_length=300).eval()
    clip = torch.randn(1, short, 128)
    batch = torch.zeros(2, 300, 128)
    batch[0, :short] = clip[0]
    batch[1] = torch.randn(300, 128)
    with torch.no_grad():
        alone = model(clip)
        together = model(batch, torch.tensor([short / 300, 1.0]))
    assert torch.allclose(alone[0], together[0], atol=1e-4)


def test_patch_count_follows_ast_for_each_valid_length():
    model = AST("micro", target_length=1024)
    assert int(model.num_time_patches(1024)) == 101
    assert int(model.num_time_patches(120)) == 11
    assert int(model.num_time_patches(3)) == 1
    with torch.no_grad():
        tokens, _ = model.forward_features(torch.randn(1, 120, 128))
    assert tokens.shape[1] == 2 + model.f_dim * 11


def test_positional_embedding_is_cropped_or_interpolated():
    model = AST("micro", target_length=300)
    grid = model.pos_embed[:, 2:].reshape(model.f_dim, model.t_dim, -1)
    short = model.patch_position_embedding(10).reshape(model.f_dim, 10, -1)
    assert torch.equal(short, grid[:, :10])
    same = model.patch_position_embedding(model.t_dim).reshape(model.f_dim, model.t_dim, -1)
    assert torch.equal(same, grid)
    longer = model.patch_position_embedding(2 * model.t_dim)
    assert longer.shape == (1, model.f_dim * 2 * model.t_dim, 64)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 900, 128))).all()


def test_backward_and_errors():
    model = AST("micro", target_length=100)
    model(torch.randn(2, 100, 128), torch.tensor([1.0, 0.3])).sum().backward()
    assert model.pos_embed.grad is not None and model.patch_embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="128 mel bins"):
        model(torch.randn(1, 100, 64))
    with pytest.raises(ValueError, match="no frames"):
        model(torch.randn(1, 0, 128))
