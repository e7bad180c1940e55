"""Sliding-window classification of clips longer than the training length.

A clip of ``L`` frames is cut into ``1 + ceil(max(0, L - window) / hop)`` windows
starting every ``hop`` frames (the last one may be shorter). Each window is
embedded and classified, and the class probabilities of a clip's windows are
averaged. A clip no longer than ``window`` is a single window, so its embedding
is the usual ``[batch, 1, dim]``.

The recipe's evaluation and the exported model both go through these functions,
so ``EncoderClassifier.classify_file`` returns what the recipe measured.
"""

import torch
from torch import nn

from speechbrain_datar.nnet.masking import relative_to_absolute_lengths


def windows_per_clip(frames, window, hop):
    """Number of windows of each clip.

    Example
    -------
    >>> windows_per_clip(torch.tensor([50, 100, 101, 260]), window=100, hop=50)
    tensor([1, 1, 2, 5])
    """
    extra = torch.clamp(frames - window, min=0)
    return 1 + torch.div(extra + hop - 1, hop, rounding_mode="floor")


def sliding_window_embeddings(encoder, feats, lengths, window, hop):
    """Embeds every window of every clip.

    Arguments
    ---------
    encoder : callable
        ``encoder(feats, lengths) -> [n, 1, dim]``.
    feats : torch.Tensor
        ``[batch, time, n_mels]``.
    lengths : torch.Tensor or None
        Relative lengths.
    window, hop : int
        Window length and hop in frames.

    Returns
    -------
    embeddings : torch.Tensor
        ``[batch, n_windows, dim]``; zero for windows a clip does not have.
    valid : torch.Tensor
        Boolean ``[batch, n_windows]``.

    Example
    -------
    >>> encoder = lambda x, l: x.mean(dim=1, keepdim=True)
    >>> emb, valid = sliding_window_embeddings(encoder, torch.ones(2, 30, 4), torch.tensor([1.0, 0.3]), 10, 10)
    >>> emb.shape, valid.tolist()
    (torch.Size([2, 3, 4]), [[True, True, True], [True, False, False]])
    """
    batch, time, n_mels = feats.shape
    frames = relative_to_absolute_lengths(lengths, time)
    if frames is None:
        frames = torch.full((batch,), time, dtype=torch.long)
    frames = frames.to(feats.device)
    span = min(window, time)
    n_windows = int(windows_per_clip(torch.tensor(time), window, hop))
    if n_windows == 1:
        return encoder(feats, lengths), torch.ones(batch, 1, dtype=torch.bool, device=feats.device)
    needed = (n_windows - 1) * hop + span
    if needed > time:
        feats = nn.functional.pad(feats, (0, 0, 0, needed - time))
    cuts = feats.unfold(1, span, hop).permute(0, 1, 3, 2)  # B, W, span, n_mels
    starts = torch.arange(n_windows, device=feats.device) * hop
    valid = torch.arange(n_windows, device=feats.device)[None, :] < windows_per_clip(frames, window, hop)[:, None]
    window_frames = torch.clamp(frames[:, None] - starts[None, :], min=1, max=span)
    selected = cuts[valid]
    rel = window_frames[valid].float() / span
    embedded = encoder(selected, rel)  # n_valid, 1, dim
    out = embedded.new_zeros(batch, n_windows, embedded.shape[-1])
    out[valid] = embedded[:, 0]
    return out, valid


def average_window_scores(classifier, embeddings, valid=None):
    """Classifies each window and averages the class probabilities over a clip's windows.

    Arguments
    ---------
    classifier : callable
        Maps ``[batch, n_windows, dim]`` to log-probabilities ``[batch, n_windows, C]``
        (or a dict of them, one per head).
    embeddings : torch.Tensor
        ``[batch, n_windows, dim]``.
    valid : torch.Tensor or None
        Boolean ``[batch, n_windows]``; ``None`` uses every window.

    Returns
    -------
    torch.Tensor or dict
        Log of the mean probability, ``[batch, 1, C]`` per head.

    Example
    -------
    >>> head = lambda x: torch.log_softmax(x, dim=-1)
    >>> emb = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])
    >>> average_window_scores(head, emb, torch.tensor([[True, False]])).exp()
    tensor([[[0.5000, 0.5000]]])
    """
    scores = classifier(embeddings)

    def average(log_probs):
        if log_probs.shape[1] == 1:
            return log_probs
        weights = torch.ones(log_probs.shape[:2], device=log_probs.device) if valid is None else valid.float()
        weights = weights / weights.sum(dim=1, keepdim=True)
        mean = (log_probs.exp() * weights.unsqueeze(-1)).sum(dim=1, keepdim=True)
        return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))

    if isinstance(scores, dict):
        return {name: average(value) for name, value in scores.items()}
    return average(scores)


class SlidingWindowEmbedding(nn.Module):
    """An ``embedding_model`` for ``EncoderClassifier`` that embeds long clips window by window.

    Returns ``[batch, n_windows, dim]`` (``[batch, 1, dim]`` for clips up to one
    window) and remembers which windows each clip has, for ``WindowScoreAverage``.

    Arguments
    ---------
    encoder : torch.nn.Module
        The encoder, e.g. ``DATAR``.
    window_frames, hop_frames : int
        Window and hop in frames.

    Example
    -------
    >>> from speechbrain_datar.lobes.models.datar import DATAR
    >>> model = SlidingWindowEmbedding(DATAR("micro", n_mels=32), window_frames=64, hop_frames=32).eval()
    >>> model(torch.randn(2, 150, 32), torch.tensor([1.0, 0.4])).shape
    torch.Size([2, 4, 128])
    >>> model.window_valid.sum(dim=1).tolist()
    [4, 1]
    """

    def __init__(self, encoder, window_frames, hop_frames):
        super().__init__()
        if window_frames < 1 or hop_frames < 1:
            raise ValueError("window_frames and hop_frames must be positive")
        self.encoder = encoder
        self.window_frames = int(window_frames)
        self.hop_frames = int(hop_frames)
        self.window_valid = None

    def forward(self, feats, lengths=None):
        """Embeds each window."""
        embeddings, self.window_valid = sliding_window_embeddings(
            self.encoder, feats, lengths, self.window_frames, self.hop_frames
        )
        return embeddings


class WindowScoreAverage(nn.Module):
    """A ``classifier`` for ``EncoderClassifier`` that averages window scores.

    Arguments
    ---------
    classifier : torch.nn.Module
        The classification head (log-probabilities).
    windows : SlidingWindowEmbedding
        The embedding model whose last call's window layout is used.

    Example
    -------
    >>> from speechbrain_datar.nnet.classifier import Classifier
    >>> windows = SlidingWindowEmbedding(torch.nn.Identity(), 10, 10)
    >>> windows.window_valid = torch.tensor([[True, False]])
    >>> WindowScoreAverage(Classifier(4, 3), windows)(torch.randn(1, 2, 4)).shape
    torch.Size([1, 1, 3])
    """

    def __init__(self, classifier, windows=None):
        super().__init__()
        self.classifier = classifier
        self._windows = [windows]  # a plain reference, not a sub-module

    def forward(self, embeddings):
        """Averages the class probabilities over the valid windows."""
        windows = self._windows[0]
        valid = None
        if windows is not None and windows.window_valid is not None:
            if windows.window_valid.shape == embeddings.shape[:2]:
                valid = windows.window_valid
        return average_window_scores(self.classifier, embeddings, valid)
