"""Local and shifted window multi-head self-attention with relative position bias.

Works on channels-last maps ``[batch, height, width, channels]`` of any size: a map
that the window does not divide is padded, and padded positions are masked out of
attention. The shifted variant does not roll the map cyclically (which would tie a
clip's result to the padded width of its batch); it offsets the window grid by
padding ``window - shift`` masked positions in front, which yields the same window
groups as Swin's cyclic shift with its mask.
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.nnet.masking import attention_mask_value


def _pair(value):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"expected two values, got {value}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def relative_position_index(window_h, window_w):
    """Index into a ``(2Wh-1)*(2Ww-1)`` bias table for every pair of positions in a window.

    Example
    -------
    >>> relative_position_index(2, 2)
    tensor([[4, 3, 1, 0],
            [5, 4, 2, 1],
            [7, 6, 4, 3],
            [8, 7, 5, 4]])
    """
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_h), torch.arange(window_w), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += window_h - 1
    rel[:, :, 1] += window_w - 1
    return rel[:, :, 0] * (2 * window_w - 1) + rel[:, :, 1]


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
        self.window_size = _pair(window_size)
        self.shift_size = _pair(shift_size)
        for shift, window in zip(self.shift_size, self.window_size):
            if not 0 <= shift < window:
                raise ValueError(f"shift_size {shift_size} must be in [0, window_size {window_size})")
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.01)
        self.register_buffer(
            "relative_position_index", relative_position_index(wh, ww), persistent=False
        )

    def relative_position_bias(self):
        """The bias ``[heads, N, N]`` added to the logits inside a window of N positions."""
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x, mask=None):
        """Attends within windows.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, height, width, dim]``; padded positions should be zero.
        mask : torch.Tensor or None
            Boolean ``[batch, height, width]``, ``True`` at valid positions.

        Returns
        -------
        torch.Tensor
            ``[batch, height, width, dim]``, zero at masked positions.
        """
        batch, height, width, dim = x.shape
        wh, ww = self.window_size
        sh, sw = self.shift_size
        top = (wh - sh) % wh
        left = (ww - sw) % ww
        bottom = (-(top + height)) % wh
        right = (-(left + width)) % ww
        padded = top or left or bottom or right
        if padded:
            x = F.pad(x, (0, 0, left, right, top, bottom))
            if mask is None:
                mask = torch.ones(batch, height, width, dtype=torch.bool, device=x.device)
            valid = F.pad(mask, (left, right, top, bottom), value=False)
        else:
            valid = mask
        hp, wp = height + top + bottom, width + left + right
        nh, nw = hp // wh, wp // ww
        n = wh * ww

        windows = (
            x.reshape(batch, nh, wh, nw, ww, dim).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, dim)
        )
        qkv = self.qkv(windows).reshape(-1, n, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)

        bias = self.relative_position_bias().to(q.dtype)
        if valid is not None:
            key_valid = (
                valid.reshape(batch, nh, wh, nw, ww).permute(0, 1, 3, 2, 4).reshape(-1, 1, 1, n)
            )
            attn_bias = bias.unsqueeze(0).masked_fill(~key_valid, attention_mask_value(q.dtype))
        else:
            attn_bias = bias.unsqueeze(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.attn_drop if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(-1, n, dim)
        out = self.proj_drop(self.proj(out))
        out = out.reshape(batch, nh, nw, wh, ww, dim).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(batch, hp, wp, dim)[:, top : top + height, left : left + width]
        if mask is not None:
            out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        return out

    def extra_repr(self):
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
            f"shift_size={self.shift_size}"
        )
