"""Deformable multi-head attention (DAT, Xia et al. CVPR 2022; used by DATAR).

Queries come from every position of the map. Keys and values come from a grid of
reference points (the map down-sampled by ``r``) moved by offsets that a small
convolutional network predicts from the queries, and read from the map by
bilinear interpolation. Attention logits get a relative position bias read by
bilinear interpolation from a ``(2H-1) x (2W-1)`` table at the continuous
query-key displacement.

Two grid conventions are available:

``"token"`` (default)
    Everything is in token (pixel) units of the unpadded map: reference point
    ``(i, j)`` sits exactly on pixel ``(i*r, j*r)``, offsets are
    ``s * tanh(.) * r / 2`` tokens (DAT's scale), and the bias table is indexed by
    the displacement in tokens, its centre at zero displacement, clamped at its
    border. With zero offsets and ``r = 1`` the keys are exactly the map's
    features, and a clip's result does not depend on the padded size of its batch.
``"dat_v1"``
    DAT's CVPR 2022 code: reference points at pixel centres normalised to
    ``[-1, 1]`` by the key grid, offsets ``s * tanh(.) / H_k``, sampling with
    ``align_corners=True`` (so zero-offset samples sit half a pixel off the
    grid), and the bias table indexed by half the normalised displacement.
    Kept for exact parity with ImageNet DAT weights; it depends on the padded
    map size.
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.nnet.layers import LayerNorm2d, to_pair
from speechbrain_datar.nnet.masking import attention_mask_value, zero_masked

GRID_CONVENTIONS = ("token", "dat_v1")


def bilinear_sample(feature_map, positions):
    """Reads a channels-last map at continuous pixel positions, zero outside the map.

    This is the paper's Eq. 3, ``sum g(py, ry) g(px, rx) map[ry, rx]`` with
    ``g(a, b) = max(0, 1 - |a - b|)``, computed in pixel units: a position on a
    pixel returns that pixel's features exactly, and the result never depends on
    how much padding surrounds the map.

    Arguments
    ---------
    feature_map : torch.Tensor
        ``[N, H, W, C]``.
    positions : torch.Tensor
        ``[N, ...]`` + ``(2,)``: pixel coordinates ``(y, x)``.

    Returns
    -------
    torch.Tensor
        ``[N, ..., C]``.

    Example
    -------
    >>> fmap = torch.arange(6.0).reshape(1, 2, 3, 1)
    >>> bilinear_sample(fmap, torch.tensor([[[0.0, 1.0], [0.5, 1.5], [0.0, 2.5]]]))[..., 0]
    tensor([[1., 3., 1.]])
    """
    batch, height, width, channels = feature_map.shape
    out_shape = positions.shape[:-1]
    # A NaN position (from a NaN input or a diverging step) reads nothing instead of becoming an
    # out-of-range index: the NaN then reaches the loss, where SpeechBrain's non-finite handling acts.
    y = torch.nan_to_num(positions[..., 0].reshape(batch, -1).float(), nan=-2.0)
    x = torch.nan_to_num(positions[..., 1].reshape(batch, -1).float(), nan=-2.0)
    y0, x0 = y.floor(), x.floor()
    fy, fx = y - y0, x - x0
    flat = feature_map.reshape(batch * height * width, channels)
    base = (torch.arange(batch, device=feature_map.device) * (height * width)).unsqueeze(1)
    out = 0.0
    for row, weight_y in ((y0, 1.0 - fy), (y0 + 1.0, fy)):
        for col, weight_x in ((x0, 1.0 - fx), (x0 + 1.0, fx)):
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            index = row.clamp(0, height - 1).long() * width + col.clamp(0, width - 1).long()
            values = flat.index_select(0, (index + base).reshape(-1)).reshape(batch, -1, channels)
            weight = (weight_y * weight_x).masked_fill(~inside, 0.0)
            out = out + values.float() * weight.unsqueeze(-1)
    return out.to(feature_map.dtype).reshape(*out_shape, channels)


class SamplingPoints(nn.Module):
    """Where a deformable attention read its keys: passes ``(positions, references)`` through unchanged.

    A place for forward hooks: the positions (``[batch, groups, H_k, W_k, 2]``)
    and the reference grid (``[H_k, W_k, 2]``) are in pixel coordinates (y, x) of
    the attention's input map. ``DATAR.forward_features(..., return_sampling=True)``
    and the visualisation read them here, so the attention's output never changes shape.

    Example
    -------
    >>> attn = DeformableAttention(dim=8, num_heads=2, num_groups=2, bias_table_size=(4, 6))
    >>> seen = []
    >>> hook = attn.sampling_points.register_forward_hook(lambda m, args, out: seen.append(out))
    >>> attn(torch.randn(2, 4, 6, 8)).shape, seen[0][0].shape, seen[0][1].shape
    (torch.Size([2, 4, 6, 8]), torch.Size([2, 2, 4, 6, 2]), torch.Size([4, 6, 2]))
    """

    def forward(self, positions, references):
        """Returns its inputs."""
        return positions, references


def query_rows_cols(height, width, device):
    """Row and column of every query of a ``height x width`` map, in row-major order.

    Example
    -------
    >>> query_rows_cols(2, 3, "cpu")
    (tensor([0, 0, 0, 1, 1, 1]), tensor([0, 1, 2, 0, 1, 2]))
    """
    rows = torch.arange(height, device=device)[:, None].expand(height, width).reshape(-1)
    cols = torch.arange(width, device=device)[None, :].expand(height, width).reshape(-1)
    return rows, cols


def broadcast_sum_as_product(query_xy, key_xy):
    """``query_xy[None, :, None, :] + key_xy[:, None, :, :]`` as one matrix product.

    ``[1, x, y] @ [keys; 1 0 1 0 ...; 0 1 0 1 ...]``: each sum is one addition as before (the other terms are
    exact zeros), and onnxruntime writes the ``[N, Q, K, 2]`` grid with its matrix kernel at about a third of
    the time of a broadcast addition whose innermost span is two values.

    Arguments
    ---------
    query_xy : torch.Tensor
        ``[Q, 2]``.
    key_xy : torch.Tensor
        ``[N, K, 2]``.

    Returns
    -------
    torch.Tensor
        ``[N, Q, K, 2]``.

    Example
    -------
    >>> q, k = torch.randn(3, 2), torch.randn(2, 4, 2)
    >>> torch.equal(broadcast_sum_as_product(q, k), q[None, :, None] + k[:, None])
    True
    """
    n, keys = key_xy.shape[:2]
    ones = torch.ones_like(query_xy[:, :1])
    left = torch.cat((ones, query_xy), dim=-1)  # Q, 3
    axes = torch.eye(2, dtype=key_xy.dtype, device=key_xy.device)[:, None, :].expand(2, keys, 2)
    right = torch.cat((key_xy.reshape(n, 1, keys * 2), axes.reshape(1, 2, keys * 2).expand(n, 2, keys * 2)), dim=1)
    return torch.matmul(left, right).reshape(n, query_xy.shape[0], keys, 2)


class OffsetGenerator(nn.Sequential):
    """DAT's offset network: depthwise kxk conv (stride r) -> LayerNorm -> GELU -> 1x1 conv without bias.

    Arguments
    ---------
    channels : int
        Channels of one group.
    kernel_size : int
        Odd kernel of the depthwise convolution (the paper uses 5).
    stride : int
        Down-sampling factor r of the reference grid.

    Example
    -------
    >>> OffsetGenerator(4, kernel_size=5, stride=2)(torch.randn(3, 4, 8, 9)).shape
    torch.Size([3, 2, 4, 5])
    """

    def __init__(self, channels, kernel_size=5, stride=1):
        if kernel_size % 2 != 1:
            raise ValueError(f"offset kernel_size must be odd, got {kernel_size}")
        super().__init__(
            nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2, groups=channels),
            LayerNorm2d(channels),
            nn.GELU(),
            nn.Conv2d(channels, 2, 1, 1, 0, bias=False),
        )


class DeformableAttention(nn.Module):
    """Deformable multi-head attention on a channels-last map ``[batch, H, W, dim]``.

    Arguments
    ---------
    dim : int
        Channels of the map.
    num_heads : int
        Attention heads; must be divisible by ``num_groups``.
    num_groups : int
        Channel groups; the heads and channels of a group share one set of offsets.
    bias_table_size : tuple
        ``(H, W)`` of the map the relative position bias table is sized for; the
        table has ``(2H-1) x (2W-1)`` entries per head.
    offset_range_factor : float
        ``s`` in ``Δp = s·tanh(θ(q))``. Offsets never exceed ``s·r/2`` tokens (in
        DAT's normalised units, ``s/H_k``). A value <= 0 leaves offsets unbounded
        (DAT's convention for no range).
    offset_stride : int
        ``r``, the reference grid's down-sampling factor.
    offset_kernel_size : int
        Kernel of the offset network's depthwise convolution.
    attn_drop, proj_drop : float
        Dropout on attention weights and on the output projection.
    use_rel_pos_bias : bool
        Whether to add the deformable relative position bias.
    grid_convention : str
        ``"token"`` (default) or ``"dat_v1"``, see the module documentation.
    query_chunk_size : int or None
        Queries are processed in chunks of this many positions. ``None`` (default)
        uses one chunk when gradients are enabled and chunks of
        ``INFERENCE_QUERY_CHUNK`` queries in inference, so that inference memory
        grows linearly with the clip length.

    Example
    -------
    >>> attn = DeformableAttention(dim=8, num_heads=2, num_groups=2, bias_table_size=(4, 6))
    >>> attn(torch.randn(2, 4, 6, 8), torch.ones(2, 4, 6, dtype=torch.bool)).shape
    torch.Size([2, 4, 6, 8])
    """

    def __init__(
        self,
        dim,
        num_heads,
        num_groups,
        bias_table_size,
        offset_range_factor=2.0,
        offset_stride=1,
        offset_kernel_size=5,
        attn_drop=0.0,
        proj_drop=0.0,
        use_rel_pos_bias=True,
        grid_convention="token",
        query_chunk_size=None,
    ):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if num_heads % num_groups != 0:
            raise ValueError(f"num_heads {num_heads} is not divisible by num_groups {num_groups}")
        if grid_convention not in GRID_CONVENTIONS:
            raise ValueError(f"grid_convention must be one of {GRID_CONVENTIONS}, got {grid_convention!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.num_groups = num_groups
        self.group_channels = dim // num_groups
        self.group_heads = num_heads // num_groups
        self.offset_range_factor = float(offset_range_factor)
        self.offset_stride = int(offset_stride)
        self.grid_convention = grid_convention
        self.query_chunk_size = query_chunk_size
        self.attn_drop = attn_drop
        self.bias_table_size = to_pair(bias_table_size)

        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.offset_generator = OffsetGenerator(self.group_channels, offset_kernel_size, self.offset_stride)
        if use_rel_pos_bias:
            th, tw = self.bias_table_size
            self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * th - 1, 2 * tw - 1))
            nn.init.trunc_normal_(self.rpe_table, std=0.01)
        else:
            self.register_parameter("rpe_table", None)
        self.sampling_points = SamplingPoints()
        self._shape_cache = {}

    # ------------------------------------------------------------------ grids
    def _shape_constant(self, name, size, device, make):
        """``make()``, kept per ``(name, size, device)``: work that depends only on a map's shape is done once
        per shape (every window of a stream has the same). An exported graph computes it in the graph."""
        if torch.compiler.is_exporting():
            return make()
        # the settings the value depends on are part of the key, so changing one never reads a stale value
        key = (name, size, torch.device(device), self.grid_convention, self.offset_stride, self.offset_range_factor)
        value = self._shape_cache.get(key)
        if value is None:
            value = self._shape_cache[key] = make()
        return value

    def _reference_points(self, key_h, key_w, device):
        """Reference points ``[key_h, key_w, 2]`` as (y, x): pixels (token) or normalised (dat_v1)."""
        return self._shape_constant(
            "references", (key_h, key_w), device, lambda: self._make_reference_points(key_h, key_w, device)
        )

    def _make_reference_points(self, key_h, key_w, device):
        ys = torch.arange(key_h, device=device, dtype=torch.float32)
        xs = torch.arange(key_w, device=device, dtype=torch.float32)
        if self.grid_convention == "token":
            ys, xs = ys * self.offset_stride, xs * self.offset_stride
        else:
            ys = (ys + 0.5) / key_h * 2.0 - 1.0
            xs = (xs + 0.5) / key_w * 2.0 - 1.0
        return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)

    def _offset_scale(self, key_h, key_w, device):
        """Multiplier of ``tanh`` for (y, x) offsets in the convention's units."""
        s = self.offset_range_factor
        if self.grid_convention == "token":
            scale = torch.tensor([s * self.offset_stride / 2.0] * 2, device=device)
        else:
            scale = torch.tensor([s / key_h, s / key_w], device=device)
        return scale

    def sampling_positions(self, queries):
        """Deformed key positions for a channels-first query map.

        Arguments
        ---------
        queries : torch.Tensor
            ``[batch * groups, group_channels, H, W]``.

        Returns
        -------
        positions : torch.Tensor
            ``[batch * groups, H_k, W_k, 2]`` (y, x) in the convention's units.
        references : torch.Tensor
            ``[H_k, W_k, 2]`` undeformed reference points.
        """
        offsets = self.offset_generator(queries).float()  # B*G, 2, Hk, Wk
        key_h, key_w = offsets.shape[-2:]
        references = self._reference_points(key_h, key_w, queries.device)
        if self.offset_range_factor > 0:
            scale = self._shape_constant(
                "offset_scale", (key_h, key_w), queries.device, lambda: self._offset_scale(key_h, key_w, queries.device)
            ).reshape(1, 2, 1, 1)
            offsets = offsets.tanh() * scale
        positions = references.unsqueeze(0) + offsets.permute(0, 2, 3, 1)
        return positions, references

    def _to_pixels(self, positions, height, width):
        """Converts positions of the current convention to pixel coordinates of the map."""
        if self.grid_convention == "token":
            return positions
        scale = positions.new_tensor([(height - 1) / 2.0, (width - 1) / 2.0])
        return (positions + 1.0) * scale

    # -------------------------------------------------------------- the bias
    def _relative_position_bias(self, positions, query_rows, query_cols, height, width, key_invalid=None):
        """Bias ``[batch*groups, group_heads, n_queries, n_keys]`` for the given queries.

        The table coordinate of a query-key pair is a per-query term plus a
        per-key term (in both conventions), so the sampling grid is one broadcast
        addition. ``key_invalid`` (``[batch*groups, n_keys]``, exported graphs only) sets the bias of padded
        keys to the attention mask's value.
        """
        batch_groups = positions.shape[0]
        keys_y = positions[..., 0].reshape(batch_groups, -1).float()
        keys_x = positions[..., 1].reshape(batch_groups, -1).float()
        rows, cols = query_rows.float(), query_cols.float()
        if self.grid_convention == "token":
            # grid = (2 * (q - k + t - 1) + 1) / (2t - 1) - 1, for each axis
            th, tw = self.bias_table_size
            sy, sx = 2 * th - 1, 2 * tw - 1
            query_terms = (
                rows * (2.0 / sy) + ((2 * th - 1.0) / sy - 1.0),
                cols * (2.0 / sx) + ((2 * tw - 1.0) / sx - 1.0),
            )
            key_terms = (keys_y * (-2.0 / sy), keys_x * (-2.0 / sx))
            padding_mode, align_corners = "border", False
        else:
            # grid = 0.5 * (q_normalised - k_normalised)
            query_terms = ((rows + 0.5) / height - 0.5, (cols + 0.5) / width - 0.5)
            key_terms = (keys_y * -0.5, keys_x * -0.5)
            padding_mode, align_corners = "zeros", True
        table = self.rpe_table.float()
        if self.exports_zero_padded_bias():
            table, query_terms, key_terms = self._zero_padded_sampling(
                table, query_terms, key_terms, height, width, key_invalid
            )
            padding_mode, align_corners = "zeros", False
        query_xy = torch.stack((query_terms[1], query_terms[0]), dim=-1)  # n_queries, 2 (x, y)
        key_xy = torch.stack((key_terms[1], key_terms[0]), dim=-1)  # batch*groups, n_keys, 2
        if torch.compiler.is_exporting():
            grid = broadcast_sum_as_product(query_xy, key_xy)
        else:
            grid = query_xy[None, :, None, :] + key_xy[:, None, :, :]
        batch = batch_groups // self.num_groups
        table = table.unsqueeze(0).expand(batch, -1, -1, -1)
        table = table.reshape(batch_groups, self.group_heads, *table.shape[-2:])
        return F.grid_sample(table, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)

    def exports_zero_padded_bias(self):
        """Whether the graph being exported reads the bias in the form of ``_zero_padded_sampling``: offsets
        bounded by ``tanh`` (``offset_range_factor > 0``) bound how far outside the table a key can send it."""
        return torch.compiler.is_exporting() and self.rpe_table is not None and self.offset_range_factor > 0

    def _zero_padded_sampling(self, table, query_terms, key_terms, height, width, key_invalid):
        """The same bias read with zero padding and ``align_corners=False``, the one form onnxruntime's
        ``GridSample`` samples through a precomputed plan (about 1.8x faster than border padding or aligned
        corners on a stage-3 bias, ``docs/benchmarks.md``), and padded keys masked by the table itself.

        Bilinear sampling depends only on the pixel coordinate and the padding, so each convention is rewritten
        exactly in pixels of a larger table: ``pixel = a * normalised + b`` with ``a = S / 2`` (corners not
        aligned) or ``(S - 1) / 2`` (aligned) and ``b = (S - 1) / 2``, split into its query and key terms.
        Border padding (``token``) is the table extended by copies of its edge cells past any sample: ``P`` cells
        on each side, the map's size plus the largest offset and two cells. Below the table, rows of the mask
        value: a padded key's row term sends every query's four corners into them, so its bias is the mask value
        (the weights sum to one) and no mask is applied to the ``[queries, keys]`` bias.
        """
        sizes = table.shape[-2:]
        aligned = self.grid_convention != "token"
        scales = [(size - 1) / 2.0 if aligned else size / 2.0 for size in sizes]
        if self.grid_convention == "token":
            reach = int(self.offset_range_factor * self.offset_stride / 2.0) + 2
            pads = (height + reach, width + reach)
            table = F.pad(table.unsqueeze(0), (pads[1], pads[1], pads[0], pads[0]), mode="replicate").squeeze(0)
        else:
            pads = (0, 0)
        # query pixels: a * term + (S - 1) / 2 + P; key pixels: a * term
        query_pixels = [
            scale * term + ((size - 1) / 2.0 + pad) for term, scale, size, pad in zip(query_terms, scales, sizes, pads)
        ]
        key_pixels = [scale * term for term, scale in zip(key_terms, scales)]
        if key_invalid is not None:
            # The lowest pixel a query's term reaches on each axis, and how far above it the others go: token
            # queries are whole pixels from the map's size; dat_v1's stay within half the table around its centre.
            lowest = [
                (size - 1) / 2.0 + pad - (scale / 2.0 if aligned else 0.0)
                for size, pad, scale in zip(sizes, pads, scales)
            ]
            reach_rows = (sizes[0] + 1) // 2 if aligned else height
            if aligned:  # zero padding: rows of zeros first, past any valid key's sample (offsets < s / H_k)
                gap = int((sizes[0] - 1) * self.offset_range_factor / 4.0) + 2
                table = torch.cat((table, table.new_zeros(table.shape[0], gap, table.shape[-1])), dim=-2)
            fill = table.new_full((table.shape[0], reach_rows + 3, table.shape[-1]), attention_mask_value(table.dtype))
            first_fill = table.shape[-2] + 1
            table = torch.cat((table, fill), dim=-2)
            # a padded key sends every query into the rows of the mask value, and inside the table's width
            key_pixels[0] = torch.where(key_invalid, first_fill - lowest[0], key_pixels[0])
            key_pixels[1] = torch.where(key_invalid, -lowest[1], key_pixels[1])
        final = table.shape[-2:]
        # normalised, corners not aligned: (2 * pixel + 1) / S - 1
        query_terms = tuple((2.0 * pixel + 1.0) / size - 1.0 for pixel, size in zip(query_pixels, final))
        key_terms = tuple(2.0 * pixel / size for pixel, size in zip(key_pixels, final))
        return table, query_terms, key_terms

    def sample_keys(self, x, queries):
        """Reads the map at the deformed reference points.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, H, W, dim]`` map the keys and values are read from.
        queries : torch.Tensor
            ``[batch, H, W, dim]`` projected queries the offsets are computed from.

        Returns
        -------
        sampled : torch.Tensor
            ``[batch, H_k * W_k, dim]`` features at the sampling positions (each
            channel group at its own positions).
        positions : torch.Tensor
            ``[batch * groups, H_k, W_k, 2]`` in the convention's units.
        references : torch.Tensor
            ``[H_k, W_k, 2]`` in the convention's units.
        """
        batch, height, width, dim = x.shape
        groups, group_channels = self.num_groups, self.group_channels
        q_groups = queries.permute(0, 3, 1, 2).reshape(batch * groups, group_channels, height, width)
        positions, references = self.sampling_positions(q_groups)
        x_groups = (
            x.reshape(batch, height, width, groups, group_channels)
            .permute(0, 3, 1, 2, 4)
            .reshape(batch * groups, height, width, group_channels)
        )
        sampled = bilinear_sample(x_groups, self._to_pixels(positions, height, width))
        n_keys = positions.shape[1] * positions.shape[2]
        sampled = sampled.reshape(batch, groups, n_keys, group_channels).transpose(1, 2)
        return sampled.reshape(batch, n_keys, dim), positions, references

    def _per_group(self, key_invalid, batch, n_keys):
        """``[batch, 1, 1, n_keys]`` key mask as ``[batch * groups, n_keys]``, the layout of the key terms."""
        return key_invalid.reshape(batch, 1, n_keys).expand(batch, self.num_groups, n_keys).reshape(-1, n_keys)

    #: Queries per chunk in inference when ``query_chunk_size`` is not set: the
    #: whole stage-3 map of a 10 s clip, and temporaries proportional to clip length.
    INFERENCE_QUERY_CHUNK = 512

    def _query_bounds(self, n_queries):
        """``(start, stop)`` of each chunk of queries: one chunk in training and in exported graphs
        (which cannot loop over a number of chunks that depends on the clip length), chunks of
        ``query_chunk_size`` (default ``INFERENCE_QUERY_CHUNK``) in inference."""
        if torch.compiler.is_exporting() or (not self.query_chunk_size and torch.is_grad_enabled()):
            return [(0, n_queries)]
        chunk = self.query_chunk_size or self.INFERENCE_QUERY_CHUNK
        return [(start, min(start + chunk, n_queries)) for start in range(0, n_queries, chunk)]

    # ---------------------------------------------------------------- forward
    def forward(self, x, mask=None):
        """Deformable attention.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, H, W, dim]``; padded positions should be zero.
        mask : torch.Tensor or None
            Boolean ``[batch, H, W]``, ``True`` at valid positions.

        Returns
        -------
        torch.Tensor
            ``[batch, H, W, dim]``, zero at masked positions. Where the keys were
            read goes through ``self.sampling_points`` (hook it to record them).
        """
        batch, height, width, dim = x.shape
        head_dim = dim // self.num_heads

        q = zero_masked(self.proj_q(x), mask)
        sampled, positions, references = self.sample_keys(x, q)
        key_h, key_w = positions.shape[1:3]
        n_keys = key_h * key_w
        pixel_positions = self._to_pixels(positions, height, width)
        k = self.proj_k(sampled).reshape(batch, n_keys, self.num_heads, head_dim).transpose(1, 2)
        v = self.proj_v(sampled).reshape(batch, n_keys, self.num_heads, head_dim).transpose(1, 2)
        q = q.reshape(batch, height * width, self.num_heads, head_dim).transpose(1, 2)

        key_invalid = None
        if mask is not None:
            stride = self.offset_stride
            key_valid = mask[:, ::stride, ::stride][:, :key_h, :key_w]
            key_invalid = ~key_valid.reshape(batch, 1, 1, n_keys)

        rows, cols = self._shape_constant(
            "queries", (height, width), x.device, lambda: query_rows_cols(height, width, x.device)
        )
        n_queries = height * width
        outputs = []
        for start, stop in self._query_bounds(n_queries):
            attn_bias = None
            masked_in_bias = key_invalid is not None and self.exports_zero_padded_bias()
            if self.rpe_table is not None:
                attn_bias = (
                    self._relative_position_bias(
                        positions,
                        rows[start:stop],
                        cols[start:stop],
                        height,
                        width,
                        self._per_group(key_invalid, batch, n_keys) if masked_in_bias else None,
                    )
                    .reshape(batch, self.num_heads, stop - start, n_keys)
                    .to(q.dtype)
                )
            if key_invalid is not None and not masked_in_bias:
                fill = attention_mask_value(q.dtype)
                if attn_bias is None:
                    attn_bias = torch.zeros(batch, 1, 1, n_keys, dtype=q.dtype, device=x.device)
                attn_bias = attn_bias.masked_fill(key_invalid, fill)
            outputs.append(
                F.scaled_dot_product_attention(
                    q[:, :, start:stop],
                    k,
                    v,
                    attn_mask=attn_bias,
                    dropout_p=self.attn_drop if self.training else 0.0,
                )
            )
        out = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
        # Heads joined by concatenation rather than transpose + reshape: the same values in eager mode, and a
        # layout that does not depend on the attention kernel's output strides in an exported graph.
        out = torch.cat(out.unbind(1), dim=-1).reshape(batch, height, width, dim)
        out = self.proj_drop(self.proj_out(out))
        self.sampling_points(  # a tap for hooks; costs nothing
            pixel_positions.reshape(batch, self.num_groups, key_h, key_w, 2), self._to_pixels(references, height, width)
        )
        return zero_masked(out, mask)

    def extra_repr(self):
        """The settings, in the module's printed form."""
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, num_groups={self.num_groups}, "
            f"offset_range_factor={self.offset_range_factor}, offset_stride={self.offset_stride}, "
            f"bias_table_size={self.bias_table_size}, grid_convention={self.grid_convention!r}"
        )
