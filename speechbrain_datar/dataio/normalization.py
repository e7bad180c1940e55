"""Dataset-level feature normalisation, as AST does it: ``(x - mean) / (2 * std)``."""

import json
import logging
import random

import torch
from torch import nn
from tqdm import tqdm

from speechbrain_datar.dataio.audio import load_clip

logger = logging.getLogger(__name__)


class DatasetNormalization(nn.Module):
    """Normalises features with one mean and std measured on the training set.

    Called like SpeechBrain's ``InputNormalization``: ``mean_var_norm(feats, lengths)``.
    The statistics are buffers, so they travel with checkpoints.

    Arguments
    ---------
    mean, std : float
        Statistics of the training features.
    scale : float
        Divisor multiplier (AST uses ``2 * std``, giving features of std 0.5).

    Example
    -------
    >>> norm = DatasetNormalization(mean=-4.0, std=2.0)
    >>> norm(torch.full((1, 3, 2), -2.0), torch.ones(1))
    tensor([[[0.5000, 0.5000],
             [0.5000, 0.5000],
             [0.5000, 0.5000]]])
    """

    def __init__(self, mean=0.0, std=0.5, scale=2.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.scale = scale

    def forward(self, feats, lengths=None):
        """Returns normalised features (``lengths`` is accepted for interface compatibility)."""
        return (feats - self.mean) / (self.scale * self.std)

    def load_stats(self, path):
        """Reads ``mean`` and ``std`` from a JSON file written by ``compute_feature_stats``."""
        with open(path) as f:
            stats = json.load(f)
        self.mean.fill_(stats["mean"])
        self.std.fill_(stats["std"])
        return self

    def extra_repr(self):
        """The statistics, in the module's printed form."""
        return f"mean={self.mean.item():.4f}, std={self.std.item():.4f}, scale={self.scale}"


@torch.no_grad()
def compute_feature_stats(entries, compute_features, sample_rate, out_path, max_clips=2000, seed=1234):
    """Measures the mean and std of the features of (a random subset of) the training clips.

    Arguments
    ---------
    entries : dict
        Manifest entries (``path``, optional ``start``/``stop``).
    compute_features : callable
        Maps waveforms ``[1, samples]`` to features ``[1, frames, n_mels]``.
    sample_rate : int
        Rate the clips are loaded at.
    out_path : str
        JSON file to write.
    max_clips : int
        Clips to use at most (chosen with ``seed``).
    seed : int
        Subset seed.

    Returns
    -------
    dict
        ``mean``, ``std``, ``clips``, ``values``.
    """
    keys = sorted(entries)
    if not keys:
        raise ValueError("cannot compute normalisation statistics: the training manifest is empty")
    if len(keys) > max_clips:
        keys = sorted(random.Random(seed).sample(keys, max_clips))
    total, total_sq, count = 0.0, 0.0, 0
    for key in tqdm(keys, desc="feature statistics", dynamic_ncols=True):
        entry = entries[key]
        wav = load_clip(entry["path"], sample_rate, entry.get("start"), entry.get("stop"))
        feats = compute_features(wav.unsqueeze(0)).double()
        total += feats.sum().item()
        total_sq += feats.square().sum().item()
        count += feats.numel()
    mean = total / count
    std = max((total_sq / count - mean**2), 1e-12) ** 0.5
    stats = {"mean": mean, "std": std, "clips": len(keys), "values": count}
    with open(out_path, "w") as f:
        json.dump(stats, f, indent=2)
    logger.info("feature statistics over %d clips: mean %.4f, std %.4f", len(keys), mean, std)
    return stats
