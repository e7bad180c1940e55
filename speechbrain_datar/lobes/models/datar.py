"""DATAR: the Deformable Audio Transformer for audio event recognition.

A four-stage pyramid transformer over a log-mel spectrogram (after the DAT
backbone, Xia et al. CVPR 2022): a patch stem, stages of local (``L``), shifted
window (``S``) and deformable (``D``) attention blocks with down-sampling in
between, a final LayerNorm and average pooling over the valid (unpadded)
positions. A learnable input adaptor enhances the spectrogram first.

The input map has frequency as height and time as width. It is padded to a
multiple of the total stride; padded positions are masked in attention, kept
exactly at zero and excluded from pooling, so a clip's embedding does not depend
on the other clips in its batch.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.nnet.deformable_attention import DeformableAttention
from speechbrain_datar.nnet.input_adaptor import build_input_adaptor
from speechbrain_datar.nnet.layers import DropPath, FeedForward, record_init_kwargs
from speechbrain_datar.nnet.masking import (
    ceil_div,
    grid_mask,
    masked_mean,
    relative_to_absolute_lengths,
)
from speechbrain_datar.nnet.window_attention import WindowAttention

_STAGE_SPEC_TINY = [["L", "S"], ["L", "S"], ["L", "D", "L", "D", "L", "D"], ["L", "D"]]
_STAGE_SPEC_DEEP = [["L", "S"], ["L", "S"], ["L", "D"] * 9, ["L", "D"]]

#: Architecture presets. ``tiny``/``small``/``base`` follow DAT-T/S/B.
PRESETS = {
    "tiny": dict(
        dims=[96, 192, 384, 768],
        depths=[2, 2, 6, 2],
        heads=[3, 6, 12, 24],
        groups=[1, 1, 3, 6],
        stage_spec=_STAGE_SPEC_TINY,
        drop_path_rate=0.2,
    ),
    "small": dict(
        dims=[96, 192, 384, 768],
        depths=[2, 2, 18, 2],
        heads=[3, 6, 12, 24],
        groups=[1, 1, 3, 6],
        stage_spec=_STAGE_SPEC_DEEP,
        drop_path_rate=0.3,
    ),
    "base": dict(
        dims=[128, 256, 512, 1024],
        depths=[2, 2, 18, 2],
        heads=[4, 8, 16, 32],
        groups=[1, 1, 4, 8],
        stage_spec=_STAGE_SPEC_DEEP,
        drop_path_rate=0.5,
    ),
    # A very small network with the same layout, for tests and demos on a CPU.
    "micro": dict(
        dims=[16, 32, 64, 128],
        depths=[2, 2, 2, 2],
        heads=[1, 2, 4, 8],
        groups=[1, 1, 2, 4],
        stage_spec=[["L", "S"], ["L", "S"], ["L", "D"], ["L", "D"]],
        drop_path_rate=0.0,
    ),
}


def _per_stage(value, num_stages, name):
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f"{name} needs {num_stages} values, got {value}")
        return list(value)
    return [value] * num_stages


def _parse_stage_spec(stage_spec, depths):
    spec = [list(s) if isinstance(s, str) else [str(b) for b in s] for s in stage_spec]
    if [len(s) for s in spec] != list(depths):
        raise ValueError(f"stage_spec {stage_spec} does not match depths {depths}")
    for block in sum(spec, []):
        if block not in ("L", "S", "D"):
            raise ValueError(f"unknown block type {block!r}: use L (local), S (shifted) or D (deformable)")
    return spec


class DATARBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))`` then ``x + MLP(LN(x))``, mask-aware.

    Arguments
    ---------
    dim : int
        Channels.
    attention : torch.nn.Module
        A ``WindowAttention`` or ``DeformableAttention`` taking ``(x, mask)``.
    mlp_ratio : float
        MLP hidden size as a multiple of ``dim``.
    dropout : float
        MLP dropout.
    drop_path : float
        Stochastic depth rate of both residual branches.

    Example
    -------
    >>> from speechbrain_datar.nnet.window_attention import WindowAttention
    >>> block = DATARBlock(8, WindowAttention(8, 2, window_size=3))
    >>> block(torch.randn(2, 4, 5, 8)).shape
    torch.Size([2, 4, 5, 8])
    """

    def __init__(self, dim, attention, mlp_ratio=4.0, dropout=0.0, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio, dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @property
    def is_deformable(self):
        """Whether the attention is deformable."""
        return isinstance(self.attn, DeformableAttention)

    def forward(self, x, mask=None, return_sampling=False):
        """Runs the block on ``[batch, H, W, dim]``; padded positions stay zero."""
        keep = None if mask is None else mask.unsqueeze(-1)
        h = self.norm1(x)
        if keep is not None:
            h = h.masked_fill(~keep, 0.0)
        sampling = None
        if return_sampling and self.is_deformable:
            h, positions, references = self.attn(h, mask, return_sampling=True)
            sampling = (positions, references)
        else:
            h = self.attn(h, mask)
        x = x + self.drop_path(h)
        h = self.mlp(self.norm2(x))
        if keep is not None:
            h = h.masked_fill(~keep, 0.0)
        x = x + self.drop_path(h)
        return (x, sampling) if return_sampling else x


class DATAR(nn.Module):
    """DATAR encoder: ``embedding_model(feats, lengths) -> [batch, 1, dim]``.

    Arguments
    ---------
    preset : str
        ``"tiny"`` (DAT-T shape, default), ``"small"``, ``"base"`` or ``"micro"``
        (a very small network for tests). Any argument below given explicitly
        overrides the preset.
    n_mels : int
        Mel bins of the input features (map height).
    reference_frames : int
        Clip length in frames the relative-position bias tables are sized for
        (the training length; other lengths work too).
    patch_size : int or tuple
        Stride and size of the patch stem; ``(frequency, time)`` for rectangular
        patches (coarse-to-fine training's Patch method widens them along time).
    dims, depths, heads, groups : list of int
        Per stage: channels, blocks, heads and offset groups (for D blocks).
    stage_spec : list
        Per stage, the block types, e.g. ``[[L, S], [L, S], [L, D, L, D, L, D], [L, D]]``.
    window_size : int
        Window of L and S blocks; S blocks shift by ``ceil(window / 2)`` as DAT does.
    mlp_ratio : float
        MLP expansion.
    offset_range_factor : float or list
        ``s`` of the deformable blocks (per stage or one value).
    offset_strides : int or list
        Reference-grid down-sampling ``r`` per stage.
    offset_kernel_sizes : int or list
        Kernel of the offset network's depthwise convolution per stage.
    drop_rate, attn_drop_rate : float
        Dropout in MLPs/projections and on attention weights.
    drop_path_rate : float
        Stochastic depth, growing linearly to this value over the blocks.
    deformable : bool
        ``False`` replaces every D block by local window attention (ablation).
    input_adaptor : str
        ``"learnable"`` (default), ``"gaussian"``, ``"laplacian"`` or ``"none"``.
    adaptor_strength : float
        λ of the learnable adaptor, or σ of the random perturbations.
    adaptor_kernel_size : int
        Kernel of the adaptor's convolution.
    grid_convention : str
        ``"token"`` (default) or ``"dat_v1"`` for the deformable blocks.
    query_chunk_size : int or None
        Query chunking in deformable blocks (bounds inference memory on long clips).

    Example
    -------
    >>> model = DATAR(preset="micro").eval()
    >>> feats = torch.randn(3, 200, 128)
    >>> model(feats, torch.tensor([1.0, 0.6, 0.05])).shape
    torch.Size([3, 1, 128])
    """

    def __init__(
        self,
        preset="tiny",
        n_mels=128,
        reference_frames=1024,
        patch_size=4,
        dims=None,
        depths=None,
        heads=None,
        groups=None,
        stage_spec=None,
        window_size=7,
        mlp_ratio=4.0,
        offset_range_factor=2.0,
        offset_strides=1,
        offset_kernel_sizes=(9, 7, 5, 3),
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=None,
        deformable=True,
        input_adaptor="learnable",
        adaptor_strength=0.005,
        adaptor_kernel_size=3,
        grid_convention="token",
        query_chunk_size=None,
    ):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        config = copy.deepcopy(PRESETS[preset])
        for key, value in dict(
            dims=dims, depths=depths, heads=heads, groups=groups,
            stage_spec=stage_spec, drop_path_rate=drop_path_rate,
        ).items():
            if value is not None:
                config[key] = value
        dims, depths, heads = list(config["dims"]), list(config["depths"]), list(config["heads"])
        num_stages = len(dims)
        groups = _per_stage(config["groups"], num_stages, "groups")
        spec = _parse_stage_spec(config["stage_spec"], depths)
        if not deformable:
            spec = [["L" if b == "D" else b for b in stage] for stage in spec]
        ranges = _per_stage(offset_range_factor, num_stages, "offset_range_factor")
        strides = _per_stage(offset_strides, num_stages, "offset_strides")
        kernels = _per_stage(offset_kernel_sizes, num_stages, "offset_kernel_sizes")

        self.preset = preset
        self.n_mels = n_mels
        self.dims = dims
        self.stage_spec = spec
        self.num_stages = num_stages
        self.embedding_dim = dims[-1]

        self.input_adaptor = build_input_adaptor(input_adaptor, adaptor_strength, adaptor_kernel_size)
        self.patch_proj = nn.Conv2d(1, dims[0], 1)
        self.set_patch_size(patch_size)
        self.patch_norm = nn.LayerNorm(dims[0])

        rates = torch.linspace(0, config["drop_path_rate"], sum(depths)).tolist()
        shift = (window_size + 1) // 2
        self.stages = nn.ModuleList()
        self.down_projs = nn.ModuleList()
        self.down_norms = nn.ModuleList()
        map_h, map_w = ceil_div(n_mels, self.patch_size[0]), ceil_div(reference_frames, self.patch_size[1])
        block_index = 0
        for i in range(num_stages):
            blocks = nn.ModuleList()
            for kind in spec[i]:
                if kind == "D":
                    attention = DeformableAttention(
                        dims[i], heads[i], groups[i], (map_h, map_w),
                        offset_range_factor=ranges[i], offset_stride=strides[i],
                        offset_kernel_size=kernels[i], attn_drop=attn_drop_rate,
                        proj_drop=drop_rate, grid_convention=grid_convention,
                        query_chunk_size=query_chunk_size,
                    )
                else:
                    attention = WindowAttention(
                        dims[i], heads[i], window_size, shift if kind == "S" else 0,
                        attn_drop=attn_drop_rate, proj_drop=drop_rate,
                    )
                blocks.append(DATARBlock(dims[i], attention, mlp_ratio, drop_rate, rates[block_index]))
                block_index += 1
            self.stages.append(blocks)
            if i < num_stages - 1:
                self.down_projs.append(nn.Conv2d(dims[i], dims[i + 1], 2, 2, bias=False))
                self.down_norms.append(nn.LayerNorm(dims[i + 1]))
                map_h, map_w = ceil_div(map_h, 2), ceil_div(map_w, 2)
        self.norm = nn.LayerNorm(dims[-1])
        self.apply(self._init_weights)

    def set_patch_size(self, patch_size, weight=None):
        """Sets the patch stem's size and stride ``(frequency, time)``, optionally with new weights.

        The stem is the only part of DATAR whose shape depends on the patch grid;
        ``weight`` (``[dims[0], 1, h, w]``) replaces its kernel, otherwise a fresh
        one is initialised when the size changes.
        """
        size = tuple(patch_size) if isinstance(patch_size, (list, tuple)) else (int(patch_size),) * 2
        self.patch_size = size
        self.total_stride = (size[0] * 2 ** (self.num_stages - 1), size[1] * 2 ** (self.num_stages - 1))
        conv = self.patch_proj
        if weight is None and tuple(conv.kernel_size) == size:
            return
        new = nn.Conv2d(1, conv.out_channels, size, size).to(conv.weight.device, conv.weight.dtype)
        with torch.no_grad():
            if weight is not None:
                new.weight.copy_(weight)
            new.bias.copy_(conv.bias)
        self.patch_proj = new

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def _stage_mask(self, frames, valid_h, height, width, stride, device):
        if frames is None:
            return None
        mask = grid_mask(ceil_div(frames, stride[1]), ceil_div(valid_h, stride[0]), height, width)
        return None if bool(mask.all()) else mask

    def forward_features(self, feats, lengths=None, return_sampling=False):
        """Runs the encoder and returns its intermediate results.

        Arguments
        ---------
        feats : torch.Tensor
            ``[batch, time, n_mels]`` features.
        lengths : torch.Tensor or None
            Relative lengths in (0, 1].
        return_sampling : bool
            Collect the deformable blocks' sampling points.

        Returns
        -------
        dict
            ``embedding`` ``[batch, 1, dim]``; ``adapted`` (the adaptor's output,
            ``[batch, time, n_mels]``); ``feature_map`` ``[batch, H, W, dim]`` and
            its ``mask``; and, if asked, ``sampling``: one dict per D block with
            ``stage``, ``block``, ``stride`` (input bins and frames per map pixel),
            ``positions`` ``[batch, groups, H_k, W_k, 2]`` and ``references`` in
            map pixels (y = frequency, x = time).
        """
        if feats.dim() != 3:
            raise ValueError(f"DATAR expects features [batch, time, n_mels], got shape {tuple(feats.shape)}")
        batch, time, n_mels = feats.shape
        if n_mels != self.n_mels:
            raise ValueError(f"DATAR was built for {self.n_mels} mel bins, got features with {n_mels}")
        frames = relative_to_absolute_lengths(lengths, time)
        if frames is None and time % self.total_stride[1]:
            frames = torch.full((batch,), time, dtype=torch.long, device=feats.device)
        if frames is not None:
            frames = frames.to(feats.device)

        adapted = self.input_adaptor(feats)
        if frames is not None:
            frame_ok = torch.arange(time, device=feats.device)[None, :] < frames[:, None]
            adapted = adapted.masked_fill(~frame_ok.unsqueeze(-1), 0.0)
        x = adapted.transpose(1, 2).unsqueeze(1)  # B, 1, n_mels, time
        pad_h = (-n_mels) % self.total_stride[0]
        pad_w = (-time) % self.total_stride[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
            if frames is None:
                frames = torch.full((batch,), time, dtype=torch.long, device=feats.device)

        x = self.patch_norm(self.patch_proj(x).permute(0, 2, 3, 1))
        stride = self.patch_size
        mask = self._stage_mask(frames, n_mels, x.shape[1], x.shape[2], stride, x.device)
        sampling = []
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x = self.down_projs[i - 1](x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
                x = self.down_norms[i - 1](x)
                stride = (stride[0] * 2, stride[1] * 2)
                mask = self._stage_mask(frames, n_mels, x.shape[1], x.shape[2], stride, x.device)
            if mask is not None:
                x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
            for j, block in enumerate(blocks):
                if return_sampling:
                    x, points = block(x, mask, return_sampling=True)
                    if points is not None:
                        sampling.append(
                            dict(stage=i, block=j, stride=stride, positions=points[0], references=points[1])
                        )
                else:
                    x = block(x, mask)
        x = self.norm(x)
        if mask is not None:
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        embedding = masked_mean(x, mask).unsqueeze(1)
        out = dict(embedding=embedding, adapted=adapted, feature_map=x, mask=mask)
        if return_sampling:
            out["sampling"] = sampling
        return out

    def forward(self, feats, lengths=None):
        """Embeds ``[batch, time, n_mels]`` features into ``[batch, 1, dim]``."""
        return self.forward_features(feats, lengths)["embedding"]
