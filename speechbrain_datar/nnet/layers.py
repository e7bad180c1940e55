"""Small layers shared by the transformer encoders: stochastic depth, MLP, 2-D LayerNorm; module unwrapping."""

import copy

import torch  # noqa: F401 (used by the doctests)
from torch import nn

from speechbrain_datar.errors import DataError


def to_pair(value):
    """``(a, b)`` from one value or a pair of values.

    Example
    -------
    >>> to_pair(7), to_pair([4, 16])
    ((7, 7), (4, 16))
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"expected one value or two, got {value}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``drop_prob``.

    Arguments
    ---------
    drop_prob : float
        Probability of dropping the branch during training.

    Example
    -------
    >>> layer = DropPath(0.5).eval()
    >>> x = torch.ones(2, 3)
    >>> torch.equal(layer(x), x)
    True
    """

    def __init__(self, drop_prob=0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x):
        """Scales kept samples by ``1 / (1 - p)`` and zeroes dropped ones."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        noise = x.new_empty(shape).bernoulli_(keep)
        return x * noise / keep

    def extra_repr(self):
        """The drop probability, in the module's printed form."""
        return f"drop_prob={self.drop_prob}"


class FeedForward(nn.Module):
    """Transformer MLP: Linear -> GELU -> Dropout -> Linear -> Dropout.

    Arguments
    ---------
    dim : int
        Input and output size.
    mlp_ratio : float
        Hidden size as a multiple of ``dim``.
    dropout : float
        Dropout after each linear layer's activation and output.

    Example
    -------
    >>> FeedForward(8, 4)(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, dim, mlp_ratio=4.0, dropout=0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x):
        """Applies the MLP on the last dimension."""
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first map ``[batch, channels, height, width]``.

    Example
    -------
    >>> LayerNorm2d(4)(torch.randn(2, 4, 3, 5)).shape
    torch.Size([2, 4, 3, 5])
    """

    def forward(self, x):
        """Normalises each position's channel vector."""
        # Contiguous, so that a following convolution's weight gradients get the
        # standard strides (DDP's gradient buckets warn about channels-last ones).
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def preset_config(presets, preset, **overrides):
    """A copy of ``presets[preset]`` with the ``overrides`` that are not ``None``.

    Example
    -------
    >>> preset_config({"micro": {"dim": 8, "depth": 2}}, "micro", dim=None, depth=4)
    {'dim': 8, 'depth': 4}
    """
    if preset not in presets:
        raise DataError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    config = copy.deepcopy(presets[preset])
    config.update({key: value for key, value in overrides.items() if value is not None})
    return config


def init_linear_weights(module):
    """ViT/DAT initialisation of linear layers (truncated normal, std 0.02; zero bias); use with ``Module.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def record_init_kwargs(arguments):
    """The constructor arguments of a module, as plain YAML-friendly values.

    Call it first thing in ``__init__`` with ``locals()``; exporting a trained
    model writes these into its inference ``hyperparams.yaml``.

    Example
    -------
    >>> record_init_kwargs({"self": None, "__class__": None, "dims": (1, 2), "preset": "tiny"})
    {'dims': [1, 2], 'preset': 'tiny'}
    """

    def plain(value):
        """The value as plain lists, dicts and numbers, as JSON writes them."""
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in arguments.items() if k not in ("self", "__class__")}


def unwrap_module(module):
    """The plain module behind ``DataParallel``, ``DistributedDataParallel`` and ``torch.compile`` wrappers.

    Saving or exporting a wrapped module would otherwise record the wrapper's class
    and prefix every parameter name (``module.``, ``_orig_mod.``).

    Example
    -------
    >>> linear = nn.Linear(2, 2)
    >>> unwrap_module(nn.DataParallel(linear)) is linear
    True
    >>> unwrap_module(linear) is linear
    True
    """
    while True:
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        elif isinstance(module._modules.get("_orig_mod"), nn.Module):  # torch.compile's OptimizedModule
            module = module._modules["_orig_mod"]
        else:
            return module
