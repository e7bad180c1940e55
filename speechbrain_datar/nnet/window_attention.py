"""Local and shifted window multi-head self-attention with relative position bias.

Works on channels-last maps ``[batch, height, width, channels]`` of any size. The
window grid starts at ``-offset`` (0 for local windows, ``window - shift`` for
shifted ones); windows cut by the map's edges keep only their positions inside
the map and are attended at that smaller size, grouped by shape. This gives the
same window groups as Swin's cyclic shift with its mask, spends no work on
padding, and does not tie a clip's result to the padded width of its batch.
Positions outside ``mask`` (batch padding) are masked out as keys and zeroed.
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.nnet.layers import to_pair
from speechbrain_datar.nnet.masking import attention_mask_value, ceil_div, zero_masked


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (optionally shifted) non-overlapping windows.

    Arguments
    ---------
    dim : int
        Channels of the input map.
    num_heads : int
        Attention heads; must divide ``dim``.
    window_size : int or tuple
        Window height and width.
    shift_size : int or tuple
        Shift of the window grid; 0 gives local window attention (DAT's ``L``
        block), a positive shift the shifted window attention (``S``).
    attn_drop, proj_drop : float
        Dropout on attention weights and on the output projection.

    Example
    -------
    >>> attn = WindowAttention(dim=8, num_heads=2, window_size=3, shift_size=2)
    >>> x = torch.randn(2, 5, 7, 8)
    >>> mask = torch.ones(2, 5, 7, dtype=torch.bool); mask[1, :, 4:] = False
    >>> out = attn(x * mask[..., None], mask)
    >>> out.shape, bool(out[1, :, 4:].abs().max() == 0)
    (torch.Size([2, 5, 7, 8]), True)
    """

    def __init__(self, dim, num_heads, window_size=7, shift_size=0, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = to_pair(window_size)
        self.shift_size = to_pair(shift_size)
        for shift, window in zip(self.shift_size, self.window_size):
            if not 0 <= shift < window:
                raise ValueError(f"shift_size {shift_size} must be in [0, window_size {window_size})")
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.01)
        self._index_cache = {}

    def relative_position_bias(self, window_h=None, window_w=None):
        """The bias ``[heads, N, N]`` inside a window of ``window_h x window_w`` (default: full) positions."""
        window_h = window_h or self.window_size[0]
        window_w = window_w or self.window_size[1]
        key = (window_h, window_w)
        index = self._index_cache.get(key)
        if index is None or index.device != self.relative_position_bias_table.device:
            wh, ww = self.window_size
            ys, xs = torch.meshgrid(torch.arange(window_h), torch.arange(window_w), indexing="ij")
            ys, xs = ys.reshape(-1), xs.reshape(-1)
            index = (ys[:, None] - ys[None, :] + wh - 1) * (2 * ww - 1) + (xs[:, None] - xs[None, :] + ww - 1)
            index = index.to(self.relative_position_bias_table.device)
            if not torch.compiler.is_exporting():  # a graph being exported must not leave tensors behind
                self._index_cache[key] = index
        n = window_h * window_w
        bias = self.relative_position_bias_table[index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    @staticmethod
    @functools.lru_cache(maxsize=256)  # a function of three integers, asked for every block of every window
    def band_groups(length, window, offset):
        """Runs of equal-size window bands along one axis: ``[(start, size, count)]``.

        The window grid starts at ``-offset``; bands are cut to ``[0, length)``.

        Example
        -------
        >>> WindowAttention.band_groups(20, 7, 3)
        ((0, 4, 1), (4, 7, 2), (18, 2, 1))
        """
        cuts = sorted(
            {0, length}
            | {
                k * window - offset
                for k in range(1, (length + offset) // window + 1)
                if 0 < k * window - offset < length
            }
        )
        groups = []
        for start, stop in zip(cuts[:-1], cuts[1:]):
            size = stop - start
            if groups and groups[-1][1] == size and groups[-1][0] + groups[-1][1] * groups[-1][2] == start:
                groups[-1] = (groups[-1][0], size, groups[-1][2] + 1)
            else:
                groups.append((start, size, 1))
        return tuple(groups)  # shared by every caller: not to be changed in place

    def _attend_windows(self, x, key_valid, hs, ws, nr, nc):
        """Attention inside the ``nr x nc`` windows of ``hs x ws`` positions that tile ``x``
        (``[batch, nr * hs, nc * ws, dim]``); ``key_valid`` (same map, boolean) or ``None``."""
        batch, dim = x.shape[0], self.dim
        heads, head_dim = self.num_heads, dim // self.num_heads
        n = hs * ws
        # The input is cut into windows before the projection (a third of the projection's output to move),
        # and q, k, v are strided views of its output: the attention reads them in place.
        windows = x.reshape(batch, nr, hs, nc, ws, dim).permute(0, 1, 3, 2, 4, 5).reshape(batch * nr * nc, n, dim)
        qkv = self.qkv(windows).reshape(batch * nr * nc, n, 3, heads, head_dim)
        query, key, value = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        attn_bias = self.relative_position_bias(hs, ws).to(x.dtype).unsqueeze(0)
        if key_valid is not None:
            key_valid = key_valid.reshape(batch, nr, hs, nc, ws).permute(0, 1, 3, 2, 4)
            attn_bias = attn_bias.masked_fill(~key_valid.reshape(-1, 1, 1, n), attention_mask_value(x.dtype))
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attn_bias,
            dropout_p=self.attn_drop if self.training else 0.0,
        )  # windows, heads, n, head_dim
        attended = attended.reshape(batch, nr, nc, heads, hs, ws, head_dim)
        return attended.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, nr * hs, nc * ws, dim)

    def _attend_padded_width(self, x, mask, row_groups):
        """The same attention with the time axis padded to whole windows and the padding masked.

        For exported graphs, which serve every width: the cut windows at the map's
        left and right edges depend on the width, padded full windows do not. A masked
        key gets weight exactly zero, so the result equals the cut windows'.
        """
        batch, height, width = x.shape[:3]
        ww = self.window_size[1]
        left = (ww - self.shift_size[1]) % ww
        nc = ceil_div(width + left, ww)  # a multiple, not a remainder: exact on a symbolic width
        right = nc * ww - width - left
        x = F.pad(x, (0, 0, left, right))
        cols = torch.arange(nc * ww, device=x.device)
        valid = ((cols >= left) & (cols < left + width)).expand(batch, height, -1)
        if mask is not None:
            valid = valid & F.pad(mask, (left, right), value=False)
        bands = [
            self._attend_windows(x[:, r0 : r0 + nr * hs], valid[:, r0 : r0 + nr * hs], hs, ww, nr, nc)
            for r0, hs, nr in row_groups
        ]
        return torch.cat(bands, dim=1)[:, :, left : left + width]

    def forward(self, x, mask=None):
        """Attends within windows: ``x`` ``[batch, height, width, dim]`` (zero where ``mask``, boolean
        ``[batch, height, width]``, is ``False``) -> the same shape, zero at masked positions."""
        batch, height, width, dim = x.shape
        wh, ww = self.window_size
        sh, sw = self.shift_size
        row_groups = self.band_groups(height, wh, (wh - sh) % wh)
        if torch.compiler.is_exporting():
            out = self._attend_padded_width(x, mask, row_groups)
        else:
            out = x.new_empty(batch, height, width, dim)
            for r0, hs, nr in row_groups:
                for c0, ws, nc in self.band_groups(width, ww, (ww - sw) % ww):
                    rows, cols = slice(r0, r0 + nr * hs), slice(c0, c0 + nc * ws)
                    key_valid = None if mask is None else mask[:, rows, cols]
                    out[:, rows, cols] = self._attend_windows(x[:, rows, cols], key_valid, hs, ws, nr, nc)
        return zero_masked(self.proj_drop(self.proj(out)), mask)

    def extra_repr(self):
        """The settings, in the module's printed form."""
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, shift_size={self.shift_size}"
        )
