"""The ViT pieces AST and MBT share: multi-head self-attention with a key mask and the pre-norm block."""

import torch.nn.functional as F
from torch import nn

from speechbrain_datar.nnet.layers import DropPath, FeedForward


class MultiHeadSelfAttention(nn.Module):
    """ViT self-attention with a fused qkv projection and an optional key mask.

    Example
    -------
    >>> import torch
    >>> attn = MultiHeadSelfAttention(16, 4)
    >>> attn(torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.bool)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(self, dim, num_heads, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, key_valid=None):
        """``x``: ``[batch, tokens, dim]``; ``key_valid``: boolean ``[batch, tokens]`` or None."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, tokens, dim)))


class ViTBlock(nn.Module):
    """Pre-norm ViT block (LayerNorm eps 1e-6 as in timm/AST).

    Example
    -------
    >>> import torch
    >>> ViTBlock(16, 4)(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, drop=0.0, attn_drop=0.0, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, num_heads, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, mlp_ratio, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, key_valid=None):
        """Self-attention then MLP, both residual."""
        x = x + self.drop_path(self.attn(self.norm1(x), key_valid))
        return x + self.drop_path(self.mlp(self.norm2(x)))
