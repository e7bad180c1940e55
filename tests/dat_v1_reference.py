"""DAT v1's forward pass (CVPR 2022 semantics) written as plain functions over a raw state dict.

Independent of speechbrain_datar's modules: cyclic-roll shifted windows with a -100
region mask, pixel-centre reference points normalised by the key grid, sampling
with align_corners=True, and the bias table read at half the normalised
displacement. Used to show that DATAR with imported weights is the same network.
Checked by hand against the reference implementation (LeapLabTHU/DAT @ 81c67ea).
"""

import math

import torch
import torch.nn.functional as F

TINY = dict(
    dims=[96, 192, 384, 768],
    depths=[2, 2, 6, 2],
    heads=[3, 6, 12, 24],
    groups=[1, 1, 3, 6],
    spec=[["L", "S"], ["L", "S"], ["L", "D", "L", "D", "L", "D"], ["L", "D"]],
)


def _ln(x, sd, key):
    """LayerNorm over channels of a channels-first map."""
    x = x.permute(0, 2, 3, 1)
    x = F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"], sd[f"{key}.bias"])
    return x.permute(0, 3, 1, 2)


def _pointwise(x, sd, key):
    weight = sd[f"{key}.weight"]
    weight = weight.reshape(weight.shape[0], -1, 1, 1)
    return F.conv2d(x, weight, sd.get(f"{key}.bias"))


def _window_attention(x, sd, key, heads, window, shift):
    batch, channels, height, width = x.shape
    if shift:
        x = torch.roll(x, (-shift, -shift), (2, 3))
    n = window * window
    tokens = x.reshape(batch, channels, height // window, window, width // window, window)
    tokens = tokens.permute(0, 2, 4, 3, 5, 1).reshape(-1, n, channels)
    qkv = tokens @ sd[f"{key}.proj_qkv.weight"].t() + sd[f"{key}.proj_qkv.bias"]
    head_dim = channels // heads
    q, k, v = (t.reshape(-1, n, heads, head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    logits = (q * head_dim**-0.5) @ k.transpose(-1, -2)
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    index = (ys[:, None] - ys[None, :] + window - 1) * (2 * window - 1) + (xs[:, None] - xs[None, :] + window - 1)
    logits = logits + sd[f"{key}.relative_position_bias_table"][index].permute(2, 0, 1)
    if shift:
        region = torch.zeros(height, width)
        label = 0
        for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                region[rows, cols] = label
                label += 1
        region = region.reshape(height // window, window, width // window, window).permute(0, 2, 1, 3).reshape(-1, n)
        mask = torch.where(region[:, :, None] == region[:, None, :], 0.0, -100.0)
        logits = (logits.reshape(batch, -1, heads, n, n) + mask[None, :, None]).reshape(-1, heads, n, n)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, channels)
    out = out @ sd[f"{key}.proj_out.weight"].t() + sd[f"{key}.proj_out.bias"]
    out = out.reshape(batch, height // window, width // window, window, window, channels)
    out = out.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, height, width)
    return torch.roll(out, (shift, shift), (2, 3)) if shift else out


def _centres(size):
    return (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1


def deformable_attention(x, sd, key, heads, groups, range_factor, stride=1):
    """DAT v1's DAttentionBaseline on a channels-first map; ``stride`` is its reference-point stride ``r``
    (the offset network's convolution stride: keys on a grid ``r`` times coarser)."""
    batch, channels, height, width = x.shape
    group_channels = channels // groups
    q = _pointwise(x, sd, f"{key}.proj_q")
    offsets = q.reshape(batch * groups, group_channels, height, width)
    kernel = sd[f"{key}.conv_offset.0.weight"]
    offsets = F.conv2d(
        offsets,
        kernel,
        sd[f"{key}.conv_offset.0.bias"],
        stride=stride,
        padding=kernel.shape[-1] // 2,
        groups=group_channels,
    )
    offsets = F.gelu(_ln(offsets, sd, f"{key}.conv_offset.1.norm"))
    offsets = F.conv2d(offsets, sd[f"{key}.conv_offset.3.weight"])
    key_h, key_w = offsets.shape[-2:]
    offsets = offsets.tanh() * torch.tensor([1.0 / key_h, 1.0 / key_w]).reshape(1, 2, 1, 1) * range_factor
    ref_y, ref_x = torch.meshgrid(_centres(key_h), _centres(key_w), indexing="ij")
    pos = torch.stack((ref_y, ref_x), -1) + offsets.permute(0, 2, 3, 1)
    sampled = F.grid_sample(
        x.reshape(batch * groups, group_channels, height, width), pos[..., (1, 0)], mode="bilinear", align_corners=True
    )
    n_keys = key_h * key_w
    sampled = sampled.reshape(batch, channels, 1, n_keys)
    head_dim = channels // heads
    k = _pointwise(sampled, sd, f"{key}.proj_k").reshape(batch * heads, head_dim, n_keys)
    v = _pointwise(sampled, sd, f"{key}.proj_v").reshape(batch * heads, head_dim, n_keys)
    qh = q.reshape(batch * heads, head_dim, height * width)
    logits = torch.einsum("bcm,bcn->bmn", qh, k) * head_dim**-0.5
    q_y, q_x = torch.meshgrid(_centres(height), _centres(width), indexing="ij")
    q_grid = torch.stack((q_y, q_x), -1).reshape(1, -1, 1, 2)
    displacement = (q_grid - pos.reshape(batch * groups, 1, n_keys, 2)) * 0.5
    table = sd[f"{key}.rpe_table"]
    table = table.unsqueeze(0).expand(batch, -1, -1, -1).reshape(batch * groups, heads // groups, *table.shape[-2:])
    bias = F.grid_sample(table, displacement[..., (1, 0)], mode="bilinear", align_corners=True)
    logits = logits + bias.reshape(batch * heads, height * width, n_keys)
    out = torch.einsum("bmn,bcn->bcm", logits.softmax(-1), v).reshape(batch, channels, height, width)
    return _pointwise(out, sd, f"{key}.proj_out")


def dat_v1_features(sd, images, config=TINY, window=7, range_factor=2.0):
    """Pooled, normalised features (the classification head's input) of DAT for ``images`` [B, 3, H, W]."""
    x = F.conv2d(images, sd["patch_proj.0.weight"], sd["patch_proj.0.bias"], stride=4)
    x = _ln(x, sd, "patch_proj.1.norm")
    for i, spec in enumerate(config["spec"]):
        heads = config["heads"][i]
        for d, kind in enumerate(spec):
            key = f"stages.{i}"
            h = _ln(x, sd, f"{key}.layer_norms.{2 * d}.norm")
            if kind == "D":
                h = deformable_attention(h, sd, f"{key}.attns.{d}", heads, config["groups"][i], range_factor)
            else:
                h = _window_attention(
                    h, sd, f"{key}.attns.{d}", heads, window, math.ceil(window / 2) if kind == "S" else 0
                )
            x = x + h
            h = _ln(x, sd, f"{key}.layer_norms.{2 * d + 1}.norm").permute(0, 2, 3, 1)
            h = F.gelu(h @ sd[f"{key}.mlps.{d}.chunk.linear1.weight"].t() + sd[f"{key}.mlps.{d}.chunk.linear1.bias"])
            h = h @ sd[f"{key}.mlps.{d}.chunk.linear2.weight"].t() + sd[f"{key}.mlps.{d}.chunk.linear2.bias"]
            x = x + h.permute(0, 3, 1, 2)
        if i < len(config["spec"]) - 1:
            x = _ln(F.conv2d(x, sd[f"down_projs.{i}.0.weight"], stride=2), sd, f"down_projs.{i}.1.norm")
    return _ln(x, sd, "cls_norm.norm").mean(dim=(2, 3))


def make_dat_state_dict(config=TINY, image_size=224, window=7, num_classes=1000, seed=0):
    """Random weights in the official DAT v1 layout (key names and shapes of its ``model`` state dict)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.05):
        return torch.randn(*shape, generator=g) * std

    sd = {}
    dims = config["dims"]

    def norm(key, dim):
        sd[f"{key}.weight"] = 1 + rand(dim, std=0.1)
        sd[f"{key}.bias"] = rand(dim)

    sd["patch_proj.0.weight"], sd["patch_proj.0.bias"] = rand(dims[0], 3, 4, 4, std=0.2), rand(dims[0])
    norm("patch_proj.1.norm", dims[0])
    fmap = image_size // 4
    for i, spec in enumerate(config["spec"]):
        dim, heads = dims[i], config["heads"][i]
        for d, kind in enumerate(spec):
            key = f"stages.{i}"
            norm(f"{key}.layer_norms.{2 * d}.norm", dim)
            norm(f"{key}.layer_norms.{2 * d + 1}.norm", dim)
            sd[f"{key}.mlps.{d}.chunk.linear1.weight"], sd[f"{key}.mlps.{d}.chunk.linear1.bias"] = (
                rand(4 * dim, dim),
                rand(4 * dim),
            )
            sd[f"{key}.mlps.{d}.chunk.linear2.weight"], sd[f"{key}.mlps.{d}.chunk.linear2.bias"] = (
                rand(dim, 4 * dim),
                rand(dim),
            )
            a = f"{key}.attns.{d}"
            if kind == "D":
                gc = dim // config["groups"][i]
                kernel = {56: 9, 28: 7, 14: 5, 7: 3}[fmap]
                for name in ("q", "k", "v", "out"):
                    sd[f"{a}.proj_{name}.weight"], sd[f"{a}.proj_{name}.bias"] = (
                        rand(dim, dim, 1, 1, std=0.1),
                        rand(dim),
                    )
                sd[f"{a}.conv_offset.0.weight"], sd[f"{a}.conv_offset.0.bias"] = (
                    rand(gc, 1, kernel, kernel, std=0.2),
                    rand(gc),
                )
                norm(f"{a}.conv_offset.1.norm", gc)
                sd[f"{a}.conv_offset.3.weight"] = rand(2, gc, 1, 1, std=0.5)
                sd[f"{a}.rpe_table"] = rand(heads, 2 * fmap - 1, 2 * fmap - 1, std=0.5)
            else:
                sd[f"{a}.proj_qkv.weight"], sd[f"{a}.proj_qkv.bias"] = rand(3 * dim, dim, std=0.1), rand(3 * dim)
                sd[f"{a}.proj_out.weight"], sd[f"{a}.proj_out.bias"] = rand(dim, dim, std=0.1), rand(dim)
                sd[f"{a}.relative_position_bias_table"] = rand((2 * window - 1) ** 2, heads, std=0.5)
                sd[f"{a}.relative_position_index"] = torch.zeros(window**2, window**2, dtype=torch.long)
                if kind == "S":
                    sd[f"{a}.attn_mask"] = torch.zeros((fmap // window) ** 2, window**2, window**2)
        if i < len(config["spec"]) - 1:
            sd[f"down_projs.{i}.0.weight"] = rand(dims[i + 1], dim, 2, 2, std=0.1)
            norm(f"down_projs.{i}.1.norm", dims[i + 1])
            fmap //= 2
    norm("cls_norm.norm", dims[-1])
    sd["cls_head.weight"], sd["cls_head.bias"] = rand(num_classes, dims[-1]), rand(num_classes)
    return sd
