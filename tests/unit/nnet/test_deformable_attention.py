"""Deformable attention: grid conventions, offset range, gradients, bias lookup, masking."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import randomise_offsets

from speechbrain_datar.nnet.deformable_attention import DeformableAttention


def make(grid_convention="token", stride=1, table=(6, 9), **kwargs):
    return DeformableAttention(
        dim=12,
        num_heads=4,
        num_groups=2,
        bias_table_size=table,
        offset_stride=stride,
        grid_convention=grid_convention,
        **kwargs,
    )


def zero_offsets(attn):
    torch.nn.init.zeros_(attn.offset_generator[3].weight)
    return attn


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_zero_offsets_sample_exactly_the_grid_points(stride):
    attn = zero_offsets(make(stride=stride))
    x = torch.randn(2, 6, 9, 12)
    sampled, positions, references = attn.sample_keys(x, attn.proj_q(x))
    expected = x[:, ::stride, ::stride].reshape(2, -1, 12)
    assert torch.equal(sampled, expected)
    assert torch.equal(positions[0], references)


def test_dat_v1_zero_offsets_sit_half_a_pixel_off_the_grid():
    attn = zero_offsets(make("dat_v1"))
    x = torch.randn(1, 6, 9, 12)
    sampled, _, _ = attn.sample_keys(x, attn.proj_q(x))
    assert not torch.allclose(sampled, x.reshape(1, -1, 12), atol=1e-3)
    # DAT v1: pixel-centre references normalised by the grid, read with align_corners=True,
    # i.e. at pixel (i + 0.5) * (H - 1) / H.
    rows = (torch.arange(6) + 0.5) * 5 / 6
    cols = (torch.arange(9) + 0.5) * 8 / 9
    pixels = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1)
    fmap = x.permute(0, 3, 1, 2)
    grid = torch.stack((2 * pixels[..., 1] / 8 - 1, 2 * pixels[..., 0] / 5 - 1), -1)[None]
    manual = F.grid_sample(fmap, grid, align_corners=True).reshape(1, 12, -1).transpose(1, 2)
    assert torch.allclose(sampled, manual, atol=1e-6)


@pytest.mark.parametrize("convention,stride,factor", [("token", 1, 2.0), ("token", 2, 3.0), ("dat_v1", 1, 2.0)])
def test_offsets_never_exceed_the_configured_range(convention, stride, factor):
    attn = randomise_offsets(make(convention, stride=stride, offset_range_factor=factor), std=50.0)
    q = torch.randn(6, 6, 6, 9) * 10
    positions, references = attn.sampling_positions(q)
    offsets = (positions - references).abs()
    key_h, key_w = references.shape[:2]
    if convention == "token":
        limit = torch.tensor([factor * stride / 2] * 2)
    else:
        limit = torch.tensor([factor / key_h, factor / key_w])
    assert torch.all(offsets <= limit + 1e-6)
    # the range is actually used: large weights saturate tanh near the limit
    assert torch.all(offsets.amax(dim=(0, 1, 2)) > 0.9 * limit)


def test_gradients_reach_the_offset_generator():
    attn = randomise_offsets(make(), std=0.1)
    x = torch.randn(2, 6, 9, 12)
    attn(x).square().sum().backward()
    for name, param in attn.offset_generator.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert attn.rpe_table.grad.abs().sum() > 0


def test_bias_at_integer_displacements_reads_the_table_entries():
    attn = zero_offsets(make(table=(6, 9)))
    positions, _ = attn.sampling_positions(torch.randn(4, 6, 6, 9))
    rows = torch.arange(6).repeat_interleave(9)
    cols = torch.arange(9).repeat(6)
    bias = attn._relative_position_bias(positions, rows, cols, 6, 9)  # B*G, hg, Q, K
    bias = bias.reshape(2, 4, 54, 54)[0]
    dy = rows[:, None] - rows[None, :] + 5
    dx = cols[:, None] - cols[None, :] + 8
    expected = attn.rpe_table[:, dy, dx]
    assert torch.allclose(bias, expected, atol=1e-6)


def reference_attention(attn, x):
    """Deformable attention written out with explicit per-head loops."""
    batch, height, width, dim = x.shape
    q = attn.proj_q(x)
    sampled, positions, _ = attn.sample_keys(x, q)
    k, v = attn.proj_k(sampled), attn.proj_v(sampled)
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    bias = attn._relative_position_bias(positions, rows, cols, height, width)
    bias = bias.reshape(batch, attn.num_heads, height * width, -1)
    q = q.reshape(batch, height * width, dim)
    head_dim = dim // attn.num_heads
    outs = []
    for h in range(attn.num_heads):
        sl = slice(h * head_dim, (h + 1) * head_dim)
        logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(head_dim) + bias[:, h]
        outs.append(logits.softmax(-1) @ v[..., sl])
    return attn.proj_out(torch.cat(outs, -1)).reshape(batch, height, width, dim)


@pytest.mark.parametrize("convention", ["token", "dat_v1"])
def test_matches_explicit_attention_and_chunking_changes_nothing(convention):
    attn = randomise_offsets(make(convention), std=0.5).eval()
    x = torch.randn(2, 6, 9, 12)
    with torch.no_grad():
        expected = reference_attention(attn, x)
        assert torch.allclose(attn(x), expected, atol=1e-5)
        attn.query_chunk_size = 7
        assert torch.allclose(attn(x), expected, atol=1e-5)


def test_padded_positions_are_zero_and_do_not_change_valid_outputs():
    attn = randomise_offsets(make(), std=0.5).eval()
    x = torch.randn(1, 6, 5, 12)
    padded = torch.zeros(1, 6, 9, 12)
    padded[:, :, :5] = x
    mask = torch.zeros(1, 6, 9, dtype=torch.bool)
    mask[:, :, :5] = True
    with torch.no_grad():
        alone = attn(x)
        in_padding = attn(padded, mask)
    assert torch.all(in_padding[:, :, 5:] == 0)
    assert torch.allclose(in_padding[:, :, :5], alone, atol=1e-5)


def test_sampling_points_give_pixel_positions():
    attn = randomise_offsets(make(stride=2), std=0.5)
    seen = []
    attn.sampling_points.register_forward_hook(lambda module, args, output: seen.append(output))
    out = attn(torch.randn(2, 6, 9, 12))
    positions, references = seen[0]
    assert out.shape == (2, 6, 9, 12)
    assert positions.shape == (2, 2, 3, 5, 2)
    assert references.shape == (3, 5, 2)
    assert torch.equal(references[1, 2], torch.tensor([2.0, 4.0]))


def test_rejects_inconsistent_configuration():
    with pytest.raises(ValueError, match="num_groups"):
        DeformableAttention(12, num_heads=4, num_groups=3, bias_table_size=(4, 4))
    with pytest.raises(ValueError, match="grid_convention"):
        DeformableAttention(12, 4, 2, (4, 4), grid_convention="other")


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_dat_v1_with_reference_point_stride_equals_dats_own(stride):
    """DAT's ``strides`` setting (r): offsets and keys on a grid r times coarser, here on a 7 x 10 map that no
    r divides; the same weights through the DAT v1 restatement give the same output."""
    from dat_v1_reference import deformable_attention

    attn = randomise_offsets(make("dat_v1", stride=stride, table=(7, 10)), std=0.5).eval()
    with torch.no_grad():
        attn.rpe_table.normal_(std=0.5)
    sd = {
        f"a.proj_{name}.{part}": getattr(getattr(attn, f"proj_{name}"), part)
        for name in ("q", "k", "v", "out")
        for part in ("weight", "bias")
    }
    generator = attn.offset_generator
    sd.update(
        {
            "a.conv_offset.0.weight": generator[0].weight,
            "a.conv_offset.0.bias": generator[0].bias,
            "a.conv_offset.1.norm.weight": generator[1].weight,
            "a.conv_offset.1.norm.bias": generator[1].bias,
            "a.conv_offset.3.weight": generator[3].weight,
            "a.rpe_table": attn.rpe_table,
        }
    )
    x = torch.randn(2, 7, 10, 12)
    with torch.no_grad():
        ours = attn(x)
        theirs = deformable_attention(x.permute(0, 3, 1, 2), sd, "a", 4, 2, attn.offset_range_factor, stride)
    assert ours.shape == x.shape
    assert torch.allclose(ours, theirs.permute(0, 2, 3, 1), atol=1e-5)


@pytest.mark.parametrize("stride", [2, 4])
def test_a_clips_output_does_not_depend_on_its_batch_with_subsampled_offsets(stride):
    attn = randomise_offsets(make(stride=stride, table=(6, 11)), std=0.5).eval()
    x = torch.randn(1, 6, 7, 12)
    padded = torch.zeros(1, 6, 11, 12)  # DATAR zeroes what lies beyond a clip
    padded[:, :, :7] = x
    mask = torch.zeros(1, 6, 11, dtype=torch.bool)
    mask[:, :, :7] = True
    with torch.no_grad():
        alone = attn(x)
        together = attn(torch.cat((torch.randn(1, 6, 11, 12), padded)), torch.cat((torch.ones_like(mask), mask)))
    assert torch.allclose(together[1, :, :7], alone[0], atol=1e-4)


@pytest.mark.parametrize("convention", ["token", "dat_v1"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("table", [(3, 4), (6, 14)])  # a table smaller and larger than the 5 x 11 map
def test_the_exported_bias_form_gives_the_eager_outputs(convention, stride, table, monkeypatch):
    """While a graph is exported the bias is read with zero padding from a table extended by its edges and by
    rows of the mask value (padded keys masked through the table), and the grid is built by a product: the
    attention's outputs are those of the eager form, offsets at their largest, with and without padding."""
    torch.manual_seed(0)
    attn = randomise_offsets(make(convention, stride, table), std=5.0).eval()
    torch.nn.init.normal_(attn.rpe_table, std=1.0)
    x = torch.randn(2, 5, 11, 12)
    mask = torch.ones(2, 5, 11, dtype=torch.bool)
    mask[1, :, 7:] = False
    mask[1, 4:] = False
    x = x * mask[..., None]
    with torch.no_grad():
        eager = [attn(x), attn(x, mask)]
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
        exported_form = [attn(x), attn(x, mask)]
    for a, b in zip(eager, exported_form):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
