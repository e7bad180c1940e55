"""Local and shifted window attention against explicit Swin/DAT-style references."""

import math

import pytest
import torch

from speechbrain_datar.nnet.window_attention import WindowAttention


def swin_reference(attn, x, shift):
    """Swin/DAT shifted-window attention: cyclic roll, windows, region mask (-100), roll back."""
    batch, height, width, dim = x.shape
    wh, ww = attn.window_size
    heads = attn.num_heads
    head_dim = dim // heads
    rolled = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2)) if shift else x
    region = torch.zeros(height, width)
    if shift:
        count = 0
        for hs in (slice(0, -wh), slice(-wh, -shift), slice(-shift, None)):
            for ws in (slice(0, -ww), slice(-ww, -shift), slice(-shift, None)):
                region[hs, ws] = count
                count += 1
    out = torch.zeros_like(x)
    bias = attn.relative_position_bias()
    for i in range(0, height, wh):
        for j in range(0, width, ww):
            win = rolled[:, i : i + wh, j : j + ww].reshape(batch, -1, dim)
            reg = region[i : i + wh, j : j + ww].reshape(-1)
            mask = torch.where(reg[:, None] == reg[None, :], 0.0, -100.0)
            q, k, v = attn.qkv(win).chunk(3, dim=-1)
            heads_out = []
            for h in range(heads):
                sl = slice(h * head_dim, (h + 1) * head_dim)
                logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(head_dim)
                heads_out.append((logits + bias[h] + mask).softmax(-1) @ v[..., sl])
            out[:, i : i + wh, j : j + ww] = attn.proj(torch.cat(heads_out, -1)).reshape(batch, wh, ww, dim)
    return torch.roll(out, shifts=(shift, shift), dims=(1, 2)) if shift else out


@pytest.mark.parametrize("shift", [0, 2, 3])
def test_matches_swin_reference_on_divisible_maps(shift):
    attn = WindowAttention(dim=8, num_heads=2, window_size=4, shift_size=shift).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=1.0)
    x = torch.randn(2, 8, 12, 8)
    with torch.no_grad():
        assert torch.allclose(attn(x), swin_reference(attn, x, shift), atol=1e-5)


@pytest.mark.parametrize("shift", [0, 4])
def test_map_not_divisible_by_window_is_padded_and_masked(shift):
    attn = WindowAttention(dim=8, num_heads=2, window_size=7, shift_size=shift).eval()
    x = torch.randn(1, 5, 11, 8)
    padded = torch.zeros(1, 5, 30, 8)
    padded[:, :, :11] = x
    mask = torch.zeros(1, 5, 30, dtype=torch.bool)
    mask[:, :, :11] = True
    with torch.no_grad():
        alone = attn(x)
        in_batch = attn(padded, mask)
    assert torch.isfinite(alone).all()
    assert torch.allclose(in_batch[:, :, :11], alone, atol=1e-5)
    assert torch.all(in_batch[:, :, 11:] == 0)


def test_one_pixel_maps_and_fully_padded_windows_stay_finite():
    attn = WindowAttention(dim=8, num_heads=2, window_size=7, shift_size=4)
    x = torch.randn(3, 1, 1, 8, requires_grad=True)
    out = attn(x)
    assert out.shape == (3, 1, 1, 8) and torch.isfinite(out).all()
    mask = torch.zeros(2, 4, 20, dtype=torch.bool)
    mask[0, :, :3] = True
    y = torch.randn(2, 4, 20, 8, requires_grad=True)
    out = attn(y * mask[..., None], mask)
    out.sum().backward()
    assert torch.isfinite(y.grad).all() and torch.all(out[1] == 0)


def test_rejects_bad_shift():
    with pytest.raises(ValueError, match="shift_size"):
        WindowAttention(8, 2, window_size=4, shift_size=4)


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("width", [1, 6, 7, 20])
def test_exported_graphs_padded_windows_equal_the_cut_windows(shift, width):
    """An exported graph pads the time axis to whole windows and masks the padding (its width is symbolic);
    eager mode attends the cut edge windows at their own size. Both must give the same result."""
    attn = WindowAttention(dim=8, num_heads=2, window_size=(3, 5), shift_size=(1, shift)).eval()
    x = torch.randn(2, 5, width, 8)
    mask = torch.ones(2, 5, width, dtype=torch.bool)
    mask[1, :, (width + 1) // 2 :] = False
    x = x * mask[..., None]
    for m in (None, mask):
        rows = attn.band_groups(5, 3, (3 - 1) % 3)
        cut = attn(x, m)
        padded = attn.proj(attn._attend_padded_width(x, m, rows))
        padded = padded if m is None else padded * m[..., None]
        assert torch.allclose(padded, cut, atol=1e-6)
