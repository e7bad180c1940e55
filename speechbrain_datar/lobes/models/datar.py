"""DATAR: the Deformable Audio Transformer for audio event recognition.

A four-stage pyramid transformer over a log-mel spectrogram (after the DAT
backbone, Xia et al. CVPR 2022). The data path, each step a named module::

    input_adaptor -> patch_proj (the stem) -> stages[0..3] -> norm -> pool

Every stage but the first starts with a 2x2 down-sampling (``PatchMerging``);
its blocks are local (``L``), shifted window (``S``) or deformable (``D``)
attention. The input map has frequency as height and time as width. The stem
pads it to whole patches (an exported graph: to a multiple of the total stride)
and every down-sampling pads an odd map by one zero row or column, so full clips
of any length need no mask. Batch padding gets a mask that every stage halves
with the map; padded positions are masked in attention, kept exactly at zero and
excluded from pooling, so a clip's embedding does not depend on the other clips
in its batch.
"""

import contextlib
import logging
import math
import re

import torch
from torch import nn

from speechbrain_datar.lobes.checkpoint_mapping import CheckpointLayoutError, examples, resize_table, start_import
from speechbrain_datar.lobes.encoder import AudioEncoder
from speechbrain_datar.nnet.deformable_attention import DeformableAttention
from speechbrain_datar.nnet.input_adaptor import build_input_adaptor
from speechbrain_datar.nnet.layers import (
    DropPath,
    FeedForward,
    init_linear_weights,
    preset_config,
    record_init_kwargs,
    to_pair,
)
from speechbrain_datar.nnet.masking import ceil_div, masked_mean, valid_frames, zero_masked, zero_padded_frames
from speechbrain_datar.nnet.patch_embedding import PatchEmbedding, PatchMerging
from speechbrain_datar.nnet.window_attention import WindowAttention

__all__ = ["DATAR", "PRESETS"]

logger = logging.getLogger(__name__)

_STAGE_SPEC_TINY = [["L", "S"], ["L", "S"], ["L", "D", "L", "D", "L", "D"], ["L", "D"]]
_STAGE_SPEC_DEEP = [["L", "S"], ["L", "S"], ["L", "D"] * 9, ["L", "D"]]

#: Architecture presets. ``tiny``/``small``/``base`` follow DAT-T/S/B; ``micro`` is a very small network
#: with the same layout, for tests and demos on a CPU; ``mini`` is ``micro`` twice as wide.
PRESETS = {
    name: dict(dims=dims, depths=depths, heads=heads, groups=groups, stage_spec=spec, drop_path_rate=rate)
    for name, dims, depths, heads, groups, spec, rate in (
        ("tiny", [96, 192, 384, 768], [2, 2, 6, 2], [3, 6, 12, 24], [1, 1, 3, 6], _STAGE_SPEC_TINY, 0.2),
        ("small", [96, 192, 384, 768], [2, 2, 18, 2], [3, 6, 12, 24], [1, 1, 3, 6], _STAGE_SPEC_DEEP, 0.3),
        ("base", [128, 256, 512, 1024], [2, 2, 18, 2], [4, 8, 16, 32], [1, 1, 4, 8], _STAGE_SPEC_DEEP, 0.5),
        (
            "micro",
            [16, 32, 64, 128],
            [2, 2, 2, 2],
            [1, 2, 4, 8],
            [1, 1, 2, 4],
            [["L", "S"], ["L", "S"], ["L", "D"], ["L", "D"]],
            0.0,
        ),
        # micro twice as wide: about AST-micro's MACs (0.55 G on a 5 s clip), for comparisons at equal compute
        (
            "mini",
            [32, 64, 128, 256],
            [2, 2, 2, 2],
            [2, 4, 8, 16],
            [1, 1, 2, 4],
            [["L", "S"], ["L", "S"], ["L", "D"], ["L", "D"]],
            0.0,
        ),
    )
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

    def forward(self, x, mask=None):
        """Runs the block on ``[batch, H, W, dim]``; padded positions stay zero."""
        x = x + self.drop_path(self.attn(zero_masked(self.norm1(x), mask), mask))
        return x + self.drop_path(zero_masked(self.mlp(self.norm2(x)), mask))


class DATARStage(nn.Module):
    """One pyramid stage: optional down-sampling, then its blocks; ``(x, mask) -> (x, mask)``.

    Blocks are indexed like a list (``stage[0]``, ``len(stage)``, ``for block in stage``).

    Arguments
    ---------
    blocks : list of DATARBlock
        The stage's blocks, in order.
    downsample : PatchMerging or None
        Down-sampling before the blocks (every stage but the first).
    stride : tuple
        ``(frequency, time)`` input bins per map position in this stage.

    Example
    -------
    >>> from speechbrain_datar.nnet.window_attention import WindowAttention
    >>> stage = DATARStage([DATARBlock(8, WindowAttention(8, 2, 3))], PatchMerging(4, 8), (8, 8))
    >>> x, mask = stage(torch.randn(2, 4, 6, 4), None)
    >>> x.shape, len(stage)
    (torch.Size([2, 2, 3, 8]), 1)
    """

    def __init__(self, blocks, downsample=None, stride=(1, 1)):
        super().__init__()
        self.downsample = downsample
        self.stride = tuple(stride)
        self.num_blocks = len(blocks)
        for index, block in enumerate(blocks):
            self.add_module(str(index), block)

    def __len__(self):
        return self.num_blocks

    def __getitem__(self, index):
        return self._modules[str(range(self.num_blocks)[index])]

    def __iter__(self):
        return (self._modules[str(i)] for i in range(self.num_blocks))

    def forward(self, x, mask=None):
        """``[batch, H, W, C]`` map and its padding mask -> the stage's output map and mask."""
        if self.downsample is not None:
            x, mask = self.downsample(x, mask)
        x = zero_masked(x, mask)
        for block in self:
            x = block(x, mask)
        return x, mask


class MaskedMeanPooling(nn.Module):
    """Average of a channels-last map over its valid positions: ``[batch, H, W, C] -> [batch, 1, C]``.

    Example
    -------
    >>> MaskedMeanPooling()(torch.ones(2, 3, 4, 5), None).shape
    torch.Size([2, 1, 5])
    """

    def forward(self, x, mask=None):
        """Mean over the positions where ``mask`` is ``True`` (all of them when ``None``)."""
        return masked_mean(x, mask).unsqueeze(1)


def _legacy_key(key):
    """State-dict key of version 0.1 (stem norm and down-sampling outside the stages) -> today's key."""
    key = re.sub(r"^patch_norm\.", "patch_proj.norm.", key)
    key = re.sub(r"^down_projs\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) + 1}.downsample.", key)
    return re.sub(r"^down_norms\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) + 1}.downsample.norm.", key)


class DATAR(AudioEncoder):
    """DATAR encoder: ``embedding_model(feats, lengths) -> [batch, 1, dim]``.

    Arguments
    ---------
    preset : str
        ``"tiny"`` (DAT-T shape, default), ``"small"``, ``"base"``, ``"micro"`` or ``"mini"``
        (a very small network for tests). Any argument below given explicitly
        overrides the preset.
    n_mels : int
        Mel bins of the input features (map height).
    reference_frames : int
        Clip length in frames the relative-position bias tables are sized for
        (the training length; other lengths work too).
    patch_size : int or tuple
        Stride and size of the patch stem; ``(frequency, time)`` for rectangular
        patches (``set_time_resolution`` widens them along time).
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
        Reference-point stride ``r`` of the deformable blocks (DAT's ``strides``): offsets
        and keys on a grid ``r`` times coarser, ``r**2`` times fewer keys per query. A list
        sets each stage exactly; one number applies to every stage, capped so that at
        least two rows of keys remain (128 mel bins: ``4`` gives 4 in the third stage, 8
        rows high, and 2 in the fourth, 4 rows high). The DATAR paper's offset network
        works "in 4x subsampled tokens": ``offset_strides=2``. Default 1, DAT-T's setting.
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
        config = preset_config(
            PRESETS,
            preset,
            dims=dims,
            depths=depths,
            heads=heads,
            groups=groups,
            stage_spec=stage_spec,
            drop_path_rate=drop_path_rate,
        )
        dims, depths, heads = list(config["dims"]), list(config["depths"]), list(config["heads"])
        num_stages = len(dims)
        groups = _per_stage(config["groups"], num_stages, "groups")
        spec = _parse_stage_spec(config["stage_spec"], depths)
        if not deformable:
            spec = [["L" if b == "D" else b for b in stage] for stage in spec]
        ranges = _per_stage(offset_range_factor, num_stages, "offset_range_factor")
        capped = isinstance(offset_strides, int)  # one number: capped per stage by the map's height
        strides = _per_stage(offset_strides, num_stages, "offset_strides")
        kernels = _per_stage(offset_kernel_sizes, num_stages, "offset_kernel_sizes")

        self.preset = preset
        self.n_mels = n_mels
        self.dims = dims
        self.stage_spec = spec
        self.num_stages = num_stages
        self.embedding_dim = dims[-1]
        self.base_patch_size = to_pair(patch_size)
        self.window_size = window_size

        self.input_adaptor = build_input_adaptor(input_adaptor, adaptor_strength, adaptor_kernel_size)
        self.patch_proj = PatchEmbedding(dims[0], self.base_patch_size, downsampling=2 ** (num_stages - 1))
        rates = iter(torch.linspace(0, config["drop_path_rate"], sum(depths)).tolist())
        shift = (window_size + 1) // 2
        map_h, map_w = ceil_div(n_mels, self.patch_size[0]), ceil_div(reference_frames, self.patch_size[1])
        self.stages = nn.ModuleList()
        for i in range(num_stages):
            if i > 0:
                map_h, map_w = ceil_div(map_h, 2), ceil_div(map_w, 2)
            blocks = []
            for kind in spec[i]:
                if kind == "D":
                    attention = DeformableAttention(
                        dims[i],
                        heads[i],
                        groups[i],
                        (map_h, map_w),
                        offset_range_factor=ranges[i],
                        offset_stride=min(strides[i], max(1, map_h // 2)) if capped else strides[i],
                        offset_kernel_size=kernels[i],
                        attn_drop=attn_drop_rate,
                        proj_drop=drop_rate,
                        grid_convention=grid_convention,
                        query_chunk_size=query_chunk_size,
                    )
                else:
                    attention = WindowAttention(
                        dims[i],
                        heads[i],
                        window_size,
                        shift if kind == "S" else 0,
                        attn_drop=attn_drop_rate,
                        proj_drop=drop_rate,
                    )
                blocks.append(DATARBlock(dims[i], attention, mlp_ratio, drop_rate, next(rates)))
            downsample = PatchMerging(dims[i - 1], dims[i]) if i > 0 else None
            self.stages.append(DATARStage(blocks, downsample, stride=(2**i, 2**i)))
        self.norm = nn.LayerNorm(dims[-1])
        self.pool = MaskedMeanPooling()
        self.apply(init_linear_weights)
        self.register_load_state_dict_pre_hook(self._rename_legacy_keys)

    @staticmethod
    def _rename_legacy_keys(module, state_dict, prefix, *args):
        # Checkpoints of version 0.1 kept the stem's norm and the down-sampling outside the stages.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + _legacy_key(key[len(prefix) :])
            if new != key:
                state_dict[new] = state_dict.pop(key)

    @property
    def patch_size(self):
        """``(frequency, time)`` size and stride of the stem's patches."""
        return tuple(self.patch_proj.stride)

    @property
    def total_stride(self):
        """``(frequency, time)`` input bins per position of the last stage's map."""
        return self.patch_proj.total_stride

    @property
    def export_time_step(self):
        """Frames by which the time axis of an exported graph grows: every stage's map then holds whole windows,
        so the graph's sizes are exact multiples (``speechbrain_datar.export_onnx``)."""
        return self.total_stride[1] * self.window_size

    def export_frames(self, frames):
        """Frames an exported graph is given for a clip of ``frames``: the next multiple of
        ``export_time_step``, the rest masked as padding (which changes nothing)."""
        return ceil_div(frames, self.export_time_step) * self.export_time_step

    def set_time_resolution(self, factor=1, patch_resize=None):
        """Adapts DATAR to features of a coarser time resolution (coarse-to-fine training).

        Arguments
        ---------
        factor : int
            1 restores the resolution DATAR was built for.
        patch_resize : str or None
            ``None``: the features themselves come ``factor`` times coarser (a larger
            frame shift or pooling); DATAR's relative-position tables are in token
            units and serve any length, so nothing changes. ``"pi"`` or
            ``"bilinear"``: the features stay at full resolution and the stem's
            patches become ``factor`` times wider along time, the kernel moving by
            that method.
        """
        height, width = self.base_patch_size
        if patch_resize is not None:
            self.patch_proj.set_patch_size((height, width * int(factor)), patch_resize)

    def forward_features(self, feats, lengths=None, return_sampling=False):
        """Runs the encoder and returns its intermediate results.

        Arguments
        ---------
        feats : torch.Tensor
            ``[batch, time, n_mels]`` features.
        lengths : torch.Tensor or None
            Relative lengths in (0, 1].
        return_sampling : bool
            Also record where the deformable blocks read their keys (through
            forward hooks; what the encoder computes does not change).

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
        sampling = []
        with self.recording_sampling(sampling) if return_sampling else contextlib.nullcontext():
            frames = valid_frames(feats, lengths, self.n_mels, "DATAR")
            adapted = zero_padded_frames(self.input_adaptor(feats), frames)
            x, mask = self.patch_proj(adapted, frames)
            for stage in self.stages:
                x, mask = stage(x, mask)
            x = zero_masked(self.norm(x), mask)
            out = dict(embedding=self.pool(x, mask), adapted=adapted, feature_map=x, mask=mask)
        return dict(out, sampling=sampling) if return_sampling else out

    def load_pretrained(self, checkpoint, streams=None, head=None, source_name="DAT checkpoint", table_resize=None):
        """Loads a DAT (CVPR 2022 layout) checkpoint; the stage layout must match it (``preset: tiny`` for DAT-T).

        Arguments
        ---------
        checkpoint : str or dict
            Path or state dict (a ``{"model": ...}`` wrapper is fine).
        table_resize : str or None
            How relative-position tables of other sizes are adapted: ``"interpolate"``
            or ``"crop"``; by default ``crop`` for the token grid convention and
            ``interpolate`` for ``dat_v1``.
        streams, head
            As ``init_from`` passes them (DATAR has the audio stream only, and no head to fill).
        source_name : str
            Name used in the report and errors.

        Returns
        -------
        ImportReport
        """
        if streams not in (None, ("audio",)):
            raise CheckpointLayoutError(f"DATAR has an audio stream only, not {list(streams)}")
        state, _, mapper = start_import(
            self,
            checkpoint,
            ("dat",),
            source_name,
            "is not a DAT checkpoint (DAT keys look like 'stages.0.attns.0.proj_qkv.weight')",
        )
        report = mapper.report
        mapper.take("patch_proj.weight", "patch_proj.0.weight", lambda w: w.sum(dim=1, keepdim=True), resized=True)
        mapper.take("patch_proj.bias", "patch_proj.0.bias")
        for suffix in ("weight", "bias"):
            mapper.take(f"patch_proj.norm.{suffix}", f"patch_proj.1.norm.{suffix}")
            mapper.take(f"norm.{suffix}", f"cls_norm.norm.{suffix}")
        for i in range(self.num_stages - 1):  # DAT's down_projs[i] follows its stage i; ours starts stage i + 1
            mapper.take(f"stages.{i + 1}.downsample.weight", f"down_projs.{i}.0.weight")
            for suffix in ("weight", "bias"):
                mapper.take(f"stages.{i + 1}.downsample.norm.{suffix}", f"down_projs.{i}.1.norm.{suffix}")
        mismatched = []
        for i, blocks in enumerate(self.stages):
            for d, block in enumerate(blocks):
                ours, theirs = f"stages.{i}.{d}.", f"stages.{i}."
                for suffix in ("weight", "bias"):
                    mapper.take(f"{ours}norm1.{suffix}", f"{theirs}layer_norms.{2 * d}.norm.{suffix}")
                    mapper.take(f"{ours}norm2.{suffix}", f"{theirs}layer_norms.{2 * d + 1}.norm.{suffix}")
                    mapper.take(f"{ours}mlp.fc1.{suffix}", f"{theirs}mlps.{d}.chunk.linear1.{suffix}")
                    mapper.take(f"{ours}mlp.fc2.{suffix}", f"{theirs}mlps.{d}.chunk.linear2.{suffix}")
                src = f"{theirs}attns.{d}."
                deformable_there = f"{src}proj_q.weight" in state
                if block.is_deformable != deformable_there:
                    if f"{src}proj_q.weight" in state or f"{src}proj_qkv.weight" in state:
                        mismatched.append(f"stages.{i}.{d}")
                    continue
                if deformable_there:
                    _map_deformable(mapper, block.attn, f"{ours}attn.", src, table_resize)
                else:
                    _map_window(mapper, block.attn, f"{ours}attn.", src)
        if mismatched:
            raise CheckpointLayoutError(
                f"{source_name}: these blocks are deformable in one model and window attention in the other: "
                f"{examples(mismatched)} (check the preset and the 'deformable' switch)"
            )
        mapper.finish(
            self,
            allowed_at_init=("input_adaptor.",),
            ignored_sources=("cls_head.", "relative_position_index", "attn_mask", "q_grid", "reference"),
        )
        logger.info(report.summary())
        return report

    #: Where the model looked can be drawn (``visualize``): the deformable blocks' sampling points.
    draws_sampling_points = True

    @property
    def time_column_frames(self):
        """Input frames per time column of the final map (the timeline's resolution)."""
        return self.total_stride[1]

    def column_embeddings(self, feats, lengths=None):
        """The final map's time columns, each the mean of its valid positions over frequency: ``[batch,
        columns, dim]``, the columns of the clip's own frames. The clip's embedding is their mean, so a linear
        head's logits of the clip are the mean of the columns' logits."""
        out = self.forward_features(feats, lengths)
        fmap, mask = out["feature_map"], out["mask"]
        batch, _, width, dim = fmap.shape
        columns = masked_mean(
            fmap.transpose(1, 2).flatten(0, 1).unsqueeze(1),
            None if mask is None else mask.transpose(1, 2).flatten(0, 1).unsqueeze(1),
        )
        return columns.reshape(batch, width, dim)[:, : -(-feats.shape[1] // self.time_column_frames)]

    def forward(self, feats, lengths=None):
        """Embeds ``[batch, time, n_mels]`` features into ``[batch, 1, dim]``."""
        return self.forward_features(feats, lengths)["embedding"]

    @contextlib.contextmanager
    def recording_sampling(self, records):
        """Appends, to ``records``, where each deformable block reads its keys during the calls inside.

        Each record is a dict: ``stage``, ``block``, ``stride`` (input bins and
        frames per map position), ``positions`` and ``references`` (map pixels).
        """
        hooks = []
        for i, stage in enumerate(self.stages):
            stride = (self.patch_size[0] * stage.stride[0], self.patch_size[1] * stage.stride[1])
            for j, block in enumerate(stage):
                if block.is_deformable:

                    def record(module, args, output, i=i, j=j, stride=stride):
                        """Keeps the block's sampling positions and references."""
                        records.append(dict(stage=i, block=j, stride=stride, positions=output[0], references=output[1]))

                    hooks.append(block.attn.sampling_points.register_forward_hook(record))
        try:
            yield records
        finally:
            for hook in hooks:
                hook.remove()


def _map_window(mapper, attn, ours, src):
    for suffix in ("weight", "bias"):
        mapper.take(f"{ours}qkv.{suffix}", f"{src}proj_qkv.{suffix}")
        mapper.take(f"{ours}proj.{suffix}", f"{src}proj_out.{suffix}")
    key = f"{src}relative_position_bias_table"
    if key in mapper.source:
        wh, ww = attn.window_size
        n, heads = mapper.source[key].shape
        side = int(math.isqrt(n))
        resized = (side, side) != (2 * wh - 1, 2 * ww - 1)

        def transform(table):
            """A relative-position table resized to this model's window."""
            grid = table.t().reshape(heads, side, side)
            grid = resize_table(grid, (2 * wh - 1, 2 * ww - 1), "interpolate")
            return grid.reshape(heads, -1).t()

        mapper.take(f"{ours}relative_position_bias_table", key, transform, resized=resized)


def _map_deformable(mapper, attn, ours, src, table_resize):
    for name in ("q", "k", "v", "out"):
        mapper.take(f"{ours}proj_{name}.weight", f"{src}proj_{name}.weight", lambda w: w.flatten(1))
        mapper.take(f"{ours}proj_{name}.bias", f"{src}proj_{name}.bias")
    for suffix in ("weight", "bias"):
        mapper.take(f"{ours}offset_generator.0.{suffix}", f"{src}conv_offset.0.{suffix}")
        mapper.take(f"{ours}offset_generator.1.{suffix}", f"{src}conv_offset.1.norm.{suffix}")
    mapper.take(f"{ours}offset_generator.3.weight", f"{src}conv_offset.3.weight")
    key = f"{src}rpe_table"
    if key in mapper.source and attn.rpe_table is not None:
        mode = table_resize or ("crop" if attn.grid_convention == "token" else "interpolate")
        size = tuple(attn.rpe_table.shape[-2:])
        resized = tuple(mapper.source[key].shape[-2:]) != size
        mapper.take(f"{ours}rpe_table", key, lambda t: resize_table(t, size, mode), resized=resized)
