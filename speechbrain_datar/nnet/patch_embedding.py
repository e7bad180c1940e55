"""Patch embeddings: DATAR's stem and its down-sampling layers, and moving patch kernels to a new size.

Both DATAR and AST turn a spectrogram into tokens with a strided convolution.
Coarse-to-fine training widens those patches along time and back; the kernel
moves between sizes by PI-resize (FlexiViT) or bilinear interpolation, with
``resize_patch_weights``, in place on the convolution (``resize_patch_kernel``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.errors import DataError
from speechbrain_datar.nnet.masking import ceil_div, grid_mask, unless_full

PATCH_RESIZES = ("pi", "bilinear")


def bilinear_resize_matrix(old_shape, new_shape):
    """The linear map ``R^(h*w) -> R^(h'*w')`` of bilinear resizing (``align_corners=False``).

    Example
    -------
    >>> bilinear_resize_matrix((2, 2), (2, 4)).shape
    torch.Size([8, 4])
    """
    n = old_shape[0] * old_shape[1]
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *old_shape)
    resized = F.interpolate(basis, size=tuple(new_shape), mode="bilinear", align_corners=False)
    return resized.reshape(n, -1).t()


def resize_patch_weights(weight, new_shape, method="pi"):
    """Resizes patch-embedding kernels ``[out, in, h, w]`` to ``new_shape``.

    ``bilinear`` interpolates the kernels. ``pi`` (PI-resize, FlexiViT) solves
    ``<x, w> = <B x, w'>`` for inputs ``x`` resized by the bilinear map ``B``:
    ``w' = pinv(B^T) w``, exact when ``B`` enlarges the patch.

    Example
    -------
    >>> w = torch.randn(3, 1, 4, 4); x = torch.randn(4, 4)
    >>> wide = resize_patch_weights(w, (4, 8), "pi")
    >>> x_wide = F.interpolate(x[None, None], size=(4, 8), mode="bilinear", align_corners=False)[0, 0]
    >>> torch.allclose((w[:, 0] * x).sum((1, 2)), (wide[:, 0] * x_wide).sum((1, 2)), atol=1e-5)
    True
    """
    if method not in PATCH_RESIZES:
        raise DataError(f"patch resize must be one of {PATCH_RESIZES}, got {method!r}")
    old_shape = tuple(weight.shape[-2:])
    new_shape = tuple(new_shape)
    if old_shape == new_shape:
        return weight.clone()
    if method == "bilinear":
        return F.interpolate(weight, size=new_shape, mode="bilinear", align_corners=False)
    resize = bilinear_resize_matrix(old_shape, new_shape)  # new x old
    flat = weight.reshape(-1, old_shape[0] * old_shape[1]).double()
    new = flat @ torch.linalg.pinv(resize.t()).t()
    return new.reshape(*weight.shape[:-2], *new_shape).to(weight.dtype)


def interpolate_time_positions(positions, f_dim, n_time):
    """Patch positional embeddings ``[1, f_dim * t, dim]`` of an (frequency, time) grid, resampled
    bilinearly to ``n_time`` columns: ``[1, f_dim * n_time, dim]``.

    Example
    -------
    >>> interpolate_time_positions(torch.randn(1, 2 * 5, 8), 2, 10).shape
    torch.Size([1, 20, 8])
    """
    dim = positions.shape[-1]
    grid = positions.reshape(1, f_dim, -1, dim).permute(0, 3, 1, 2)
    if torch.compiler.is_exporting() or grid.shape[-1] != n_time:  # the identity at the same size
        grid = F.interpolate(grid, size=(f_dim, n_time), mode="bilinear", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


def positions_for_time(positions, f_dim, n_time):
    """The patch positional embeddings for ``n_time`` columns of an (frequency, time) grid: the first
    columns for a shorter input (what padding it to the full length would give), an interpolated grid
    for a longer one. While a graph is exported the grid is always interpolated (the identity at the
    same size), so that one graph serves every input at least as long as the grid.

    Example
    -------
    >>> grid = torch.arange(6.0).reshape(1, 6, 1)  # 2 rows x 3 columns
    >>> positions_for_time(grid, 2, 2)[0, :, 0]
    tensor([0., 1., 3., 4.])
    """
    dim = positions.shape[-1]
    t_dim = positions.shape[1] // f_dim
    if torch.compiler.is_exporting() or n_time > t_dim:
        return interpolate_time_positions(positions, f_dim, n_time)
    return positions.reshape(1, f_dim, t_dim, dim)[:, :, :n_time].reshape(1, f_dim * n_time, dim)


def resize_patch_kernel(conv, kernel_size, stride, method="pi"):
    """Gives a patch convolution a new kernel size and stride in place, moving its kernel by ``method``.

    The bias is kept. The weight becomes a new ``Parameter`` (an optimiser must be
    rebuilt afterwards, as coarse-to-fine training does at every phase change).

    Example
    -------
    >>> conv = nn.Conv2d(1, 3, 4, 4)
    >>> resize_patch_kernel(conv, (4, 8), (4, 8))
    >>> conv.weight.shape, conv.stride
    (torch.Size([3, 1, 4, 8]), (4, 8))
    """
    kernel_size, stride = tuple(kernel_size), tuple(stride)
    if tuple(conv.kernel_size) != kernel_size:
        conv.weight = nn.Parameter(resize_patch_weights(conv.weight.detach(), kernel_size, method))
        conv.kernel_size = kernel_size
    conv.stride = stride


class PatchEmbedding(nn.Conv2d):
    """DATAR's stem: pads the spectrogram to whole patches, embeds non-overlapping patches, normalises.

    A ``Conv2d`` (kernel = stride = ``patch_size``) followed by a LayerNorm over
    channels (``norm``). It also makes the padding mask of the first map.

    Arguments
    ---------
    dim : int
        Output channels.
    patch_size : tuple
        ``(frequency, time)`` patch size.
    downsampling : int
        How much the stages after the stem reduce the map (2 per stage after the
        first); an exported graph's input is padded to a multiple of ``patch_size * downsampling``.

    Example
    -------
    >>> stem = PatchEmbedding(8, (4, 4), downsampling=2)
    >>> x, mask = stem(torch.randn(2, 30, 16), torch.tensor([30, 9]))
    >>> x.shape, mask.sum(dim=(1, 2)).tolist()
    (torch.Size([2, 4, 8, 8]), [32, 12])
    """

    def __init__(self, dim, patch_size, downsampling=1):
        super().__init__(1, dim, tuple(patch_size), tuple(patch_size))
        self.norm = nn.LayerNorm(dim)
        self.downsampling = int(downsampling)

    @property
    def total_stride(self):
        """``(frequency, time)`` input bins per position of the last stage's map."""
        return self.stride[0] * self.downsampling, self.stride[1] * self.downsampling

    def set_patch_size(self, patch_size, method="pi"):
        """New ``(frequency, time)`` patch size; the kernel moves by ``method`` (``pi`` or ``bilinear``)."""
        resize_patch_kernel(self, patch_size, patch_size, method)

    def forward(self, feats, frames=None):
        """``[batch, time, n_mels]`` features (zero beyond ``frames``) -> map ``[batch, H, W, dim]`` and its mask.

        The mask (``[batch, H, W]``, ``True`` at positions holding data) is ``None``
        when nothing is padded.
        """
        batch, time, n_mels = feats.shape
        x = feats.transpose(1, 2).unsqueeze(1)  # B, 1, n_mels, time
        exporting = torch.compiler.is_exporting()
        # An exported graph pads to the total stride, sizes as multiples (not remainders) that its symbolic time
        # axis divides exactly, and masks what the padding adds. Eager mode pads only the last patch: every
        # position of every map then holds data (PatchMerging pads odd maps by one zero row or column, which is
        # what the masked padding held), so a batch of full clips of any length runs without masks.
        multiple = self.total_stride if exporting else self.stride
        pad_h = ceil_div(n_mels, multiple[0]) * multiple[0] - n_mels
        pad_w = ceil_div(time, multiple[1]) * multiple[1] - time
        x = F.pad(x, (0, pad_w, 0, pad_h))
        if frames is None and exporting:
            frames = torch.full((batch,), time, dtype=torch.long, device=feats.device)
        x = self.norm(self._conv_forward(x, self.weight, self.bias).permute(0, 2, 3, 1))
        if frames is None:
            return x, None
        mask = grid_mask(ceil_div(frames, self.stride[1]), ceil_div(n_mels, self.stride[0]), x.shape[1], x.shape[2])
        return x, unless_full(mask)


class PatchMerging(nn.Conv2d):
    """Down-sampling between stages: a 2x2 convolution of stride 2 (no bias), then LayerNorm over channels.

    Works on channels-last maps and halves their padding mask with them.

    Example
    -------
    >>> merge = PatchMerging(4, 8)
    >>> mask = torch.zeros(1, 2, 6, dtype=torch.bool); mask[:, :, :3] = True
    >>> x, mask = merge(torch.randn(1, 2, 6, 4), mask)
    >>> x.shape, mask.int().tolist()
    (torch.Size([1, 1, 3, 8]), [[[1, 1, 0]]])
    """

    def __init__(self, in_dim, out_dim):
        super().__init__(in_dim, out_dim, 2, 2, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x, mask=None):
        """``[batch, H, W, in_dim]`` -> ``[batch, ceil(H/2), ceil(W/2), out_dim]``; the mask is down-sampled too."""
        if x.shape[1] % 2 or x.shape[2] % 2:  # a zero row or column: what masked padding holds
            x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        x = self.norm(self._conv_forward(x.permute(0, 3, 1, 2), self.weight, self.bias).permute(0, 2, 3, 1))
        if mask is None:
            return x, None
        # Valid positions form a prefix in both axes, so a 2x2 block holds data iff its first position does.
        return x, unless_full(mask[:, ::2, ::2])
