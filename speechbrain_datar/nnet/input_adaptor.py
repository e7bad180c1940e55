"""DATAR's learnable input adaptor and the paper's fixed-perturbation ablations.

The adaptor adds a learned, scaled convolution of the spectrogram to itself
(the paper's Eq. 5)::

    out = x + λ (b + W * x)

where ``*`` is 2-D cross-correlation over (time, frequency). The ablations of the
paper's Table 4 replace the learned term by Gaussian ``N(0, σ)`` or Laplacian
``L(0, σ)`` noise.
"""

import torch
from torch import nn

from speechbrain_datar.errors import DataError

ADAPTOR_KINDS = ("learnable", "gaussian", "laplacian", "none")


class LearnableInputAdaptor(nn.Module):
    """``out = x + λ(b + W * x)`` on features ``[batch, time, n_mels]``.

    Arguments
    ---------
    strength : float
        λ, the adaptor's strength (paper's best: 0.005).
    kernel_size : int
        Odd size of the square convolution kernel W.
    channels : int
        Input planes; spectrograms have one. With more, inputs are
        ``[batch, channels, time, n_mels]``.

    Example
    -------
    >>> adaptor = LearnableInputAdaptor(strength=0.005)
    >>> feats = torch.randn(2, 100, 128)
    >>> out = adaptor(feats)
    >>> out.shape, bool((out - feats).abs().max() < 0.1)
    (torch.Size([2, 100, 128]), True)
    """

    def __init__(self, strength=0.005, kernel_size=3, channels=1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.strength = float(strength)
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=True)

    def extra_repr(self):
        """The settings, in the module's printed form."""
        return f"strength={self.strength}"

    def forward(self, x):
        """Adds the learned enhancement to ``x``."""
        planes = x.unsqueeze(1) if self.channels == 1 and x.dim() == 3 else x
        out = planes + self.strength * self.conv(planes)
        return out.squeeze(1) if planes is not x else out


class RandomPerturbation(nn.Module):
    """Adds zero-mean Gaussian or Laplacian noise of scale σ during training (paper's Table 4).

    Arguments
    ---------
    distribution : str
        ``"gaussian"`` for N(0, σ) or ``"laplacian"`` for L(0, σ).
    scale : float
        σ: the standard deviation (Gaussian) or the scale b (Laplacian).
    in_eval : bool
        Whether to perturb in eval mode too (default: training only).

    Example
    -------
    >>> noise = RandomPerturbation("laplacian", 0.005)
    >>> x = torch.zeros(2, 50, 16)
    >>> bool(noise(x).abs().max() > 0), torch.equal(noise.eval()(x), x)
    (True, True)
    """

    def __init__(self, distribution="gaussian", scale=0.005, in_eval=False):
        super().__init__()
        if distribution not in ("gaussian", "laplacian"):
            raise ValueError(f"distribution must be 'gaussian' or 'laplacian', got {distribution!r}")
        self.distribution = distribution
        self.scale = float(scale)
        self.in_eval = in_eval

    def forward(self, x):
        """Returns ``x`` plus noise (training) or ``x`` (eval, unless ``in_eval``)."""
        if not (self.training or self.in_eval) or self.scale == 0.0:
            return x
        if self.distribution == "gaussian":
            noise = torch.randn_like(x) * self.scale
        else:
            uniform = torch.rand_like(x) - 0.5
            noise = -self.scale * torch.sign(uniform) * torch.log1p(-2.0 * uniform.abs())
        return x + noise

    def extra_repr(self):
        """The settings, in the module's printed form."""
        return f"distribution={self.distribution!r}, scale={self.scale}"


def build_input_adaptor(kind="learnable", strength=0.005, kernel_size=3):
    """Builds the adaptor named by ``kind`` (one of ``ADAPTOR_KINDS``); ``"none"`` gives Identity.

    Example
    -------
    >>> build_input_adaptor("none")
    Identity()
    >>> build_input_adaptor("gaussian", 0.005)
    RandomPerturbation(distribution='gaussian', scale=0.005)
    """
    if kind in (None, False, "none"):
        return nn.Identity()
    if kind == "learnable":
        return LearnableInputAdaptor(strength=strength, kernel_size=kernel_size)
    if kind in ("gaussian", "laplacian"):
        return RandomPerturbation(kind, strength)
    raise DataError(f"input adaptor must be one of {ADAPTOR_KINDS}, got {kind!r}")
