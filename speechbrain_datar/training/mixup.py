"""Mixup of training batches (Zhang et al., ICLR 2018), and MBT's modality mixup.

``Mixup`` mixes a batch with a permutation of itself with a weight drawn from ``Beta(alpha, alpha)``;
with ``per_modality`` (MBT's "modality mixup") the spectrogram and the frames get a weight each. It
returns the mixed inputs and a ``MixedBatch`` that the head's ``loss`` uses to mix the targets.
"""

import torch


class MixedBatch:
    """How a batch was mixed: one weight per modality (audio, then video), or one for all, and the permutation.

    Example
    -------
    >>> mix = MixedBatch([0.7, 0.2], torch.tensor([1, 0]))
    >>> mix.weight(0), mix.weight(1), mix.n_weights
    (0.7, 0.2, 2)
    >>> MixedBatch([0.7], torch.tensor([1, 0])).weight(1)  # one weight for every row
    0.7
    """

    def __init__(self, weights, perm):
        self.weights, self.perm = list(weights), perm

    @property
    def n_weights(self):
        """How many different weights the modalities got."""
        return len(set(self.weights))

    def weight(self, row):
        """The weight of a head's output row (the rows of a per-modality head are the modalities in order)."""
        return self.weights[min(row, len(self.weights) - 1)]


class Mixup:
    """Mixup of a batch of features (and frames) with a permutation of itself.

    Arguments
    ---------
    alpha : float
        ``Beta(alpha, alpha)`` draws the weight; 0 turns mixup off.
    prob : float
        Probability that a batch is mixed.
    per_modality : bool
        The frames get a weight of their own (MBT's modality mixup).

    Example
    -------
    >>> torch.manual_seed(0) and None
    >>> feats, lens = torch.randn(4, 10, 8), torch.ones(4)
    >>> mixed, _, _, mix = Mixup(alpha=0.5, prob=1.0)(feats, lens)
    >>> mixed.shape, len(mix.weights), Mixup(alpha=0.0)(feats, lens)[3] is None
    (torch.Size([4, 10, 8]), 1, True)
    """

    def __init__(self, alpha=0.0, prob=0.5, per_modality=False):
        self.alpha, self.prob, self.per_modality = float(alpha), float(prob), bool(per_modality)

    def __call__(self, feats, lens, frames=None):
        """``(feats, lens, frames, mix)``: the inputs mixed, or as they came with ``mix`` ``None``."""
        batch = (feats if feats is not None else frames).shape[0]
        if self.alpha <= 0 or batch < 2 or torch.rand(()).item() >= self.prob:
            return feats, lens, frames, None
        beta = torch.distributions.Beta(self.alpha, self.alpha)
        device = (feats if feats is not None else frames).device
        perm = torch.randperm(batch, device=device)
        weights = [beta.sample().item()]
        if feats is not None:
            feats, lens = weights[0] * feats + (1 - weights[0]) * feats[perm], torch.maximum(lens, lens[perm])
        if frames is not None:
            weights.append(beta.sample().item() if self.per_modality else weights[0])
            frames = weights[-1] * frames + (1 - weights[-1]) * frames[perm]
        return feats, lens, frames, MixedBatch(weights, perm)
