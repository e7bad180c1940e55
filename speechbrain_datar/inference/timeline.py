"""When in a recording each class sounds: class scores over time, from DATAR's final map or from short
windows, and the segments where a class's probability reaches a threshold.

DATAR keeps a time axis through its pyramid. Its clip embedding is the mean of its
final map's positions, and its head is linear up to the softmax (or sigmoid), so the
clip's logits are the mean of the logits of the map's time columns (each column
averaged over frequency). Those column scores say when each class sounds, at the
final map's time stride: 32 frames (0.32 s at a 10 ms hop) for the presets.

A recording longer than the training window is read window by window, as
``classify_file`` reads it; where windows overlap, a column's scores are averaged.

Short windows (``window_timeline``) work with any encoder: each window of, say, 1 s every
0.125 s is classified alone. They place onsets better: a model trained on whole clips
spreads a class over the columns its deformable attention reaches.
"""

import torch

from speechbrain_datar.inference.results import Segment
from speechbrain_datar.inference.sliding_window import windows_per_clip


def column_log_probs(encoder, head, feats):
    """Log-probabilities of each time column of the final map: ``{name: [batch, columns, n_classes]}``.

    Arguments
    ---------
    encoder : torch.nn.Module
        An encoder whose ``time_column_frames`` is not ``None`` (DATAR): it gives ``column_embeddings``.
    head : torch.nn.Module
        The trained head (log-softmax, or log-sigmoid for multi-label heads).
    feats : torch.Tensor
        ``[batch, time, n_mels]`` normalised features.

    Example
    -------
    >>> from speechbrain_datar.lobes.models.datar import DATAR
    >>> from speechbrain_datar.nnet.classifier import Classifier
    >>> encoder, head = DATAR("micro", n_mels=32).eval(), Classifier(128, 3, multi_label=True).eval()
    >>> column_log_probs(encoder, head, torch.randn(1, 100, 32))["label"].shape  # 100 frames: 4 columns of 32
    torch.Size([1, 4, 3])
    """
    if encoder.time_column_frames is None:
        raise TypeError(
            f"{type(encoder).__name__} has no time axis to follow: class timelines by columns need an "
            "encoder with time columns (DATAR); method='windows' works with any encoder"
        )
    return head(encoder.column_embeddings(feats))


def _stacked(rows, take):
    """Rows of per-window scores (``{name: tensor}``) -> ``{name: stacked tensor}``."""
    return {name: torch.stack([take(row[name]) for row in rows]) for name in rows[0]}


def recording_timeline(encoder, head, source, window, hop):
    """Class probabilities over a whole recording, one row per final-map column: ``{name: [columns,
    n_classes]}``.

    Arguments
    ---------
    encoder, head
        As for ``column_log_probs``.
    source : WaveformFrames or FeatureFrames
        The recording's frames (batch of one).
    window, hop : int
        Windows and hop in frames, as the exported model classifies (``hop`` a multiple of the
        final map's stride keeps the columns of overlapping windows aligned).
    """
    stride = encoder.time_column_frames
    n_frames = source.n_frames
    n_columns = -(-n_frames // stride)
    pieces = []
    for index in range(int(windows_per_clip(torch.tensor(n_frames), window, hop))):
        start = index * hop
        scores = column_log_probs(encoder, head, source.frames(start, min(start + window, n_frames)))
        pieces.append((start // stride, scores))

    def assemble(name):
        """One head's per-column probabilities, averaged where windows overlap."""
        total, count = None, torch.zeros(n_columns)
        for first, scores in pieces:
            probs = scores[name].exp()[0].cpu()
            total = torch.zeros(n_columns, probs.shape[-1]) if total is None else total
            rows = min(probs.shape[0], n_columns - first)
            total[first : first + rows] += probs[:rows]
            count[first : first + rows] += 1
        return total / count.clamp(min=1).unsqueeze(1)

    return {name: assemble(name) for name in pieces[0][1]}


def window_timeline(encoder, head, source, window, hop):
    """Class probabilities of short windows over a recording, any encoder: ``{name: [n_windows, n_classes]}``.

    Window ``i`` covers frames ``[i * hop, i * hop + window)``; its row stands for the ``hop`` frames
    around its centre. Each window is classified alone, so a class scores where it sounds, at the price
    of one encoder call per window.

    Arguments
    ---------
    encoder, head
        The trained encoder (``encoder(feats) -> [batch, 1, dim]``) and head.
    source : WaveformFrames or FeatureFrames
        The recording's frames (batch of one).
    window, hop : int
        Window and hop in frames.
    """
    n_frames = source.n_frames
    rows = [
        head(encoder(source.frames(start, min(start + window, n_frames))))
        for start in range(0, max(1, n_frames - window + hop), hop)
    ]
    return _stacked(rows, lambda row: row.exp()[0, 0].cpu())


def segments(probs, resolution, labels, threshold=0.5, min_seconds=0.0, offset=0.0):
    """Runs of columns where a class's probability reaches ``threshold``: ``[Segment(start, end, label, score)]``.

    Arguments
    ---------
    probs : torch.Tensor
        ``[columns, n_classes]`` probabilities.
    resolution : float
        Seconds per column.
    labels : list
        Class names by index.
    threshold : float
        Probability a column needs.
    min_seconds : float
        Shorter segments are left out.
    offset : float
        Seconds at which the first row starts.

    Returns
    -------
    list
        ``Segment(start, end, label, score)`` in seconds, the score the segment's highest probability,
        sorted by start.

    Example
    -------
    >>> probs = torch.tensor([[0.1, 0.9], [0.8, 0.7], [0.9, 0.2], [0.2, 0.1]])
    >>> [tuple(segment) for segment in segments(probs, 0.5, ["dog", "cat"])]
    [(0.0, 1.0, 'cat', 0.9), (0.5, 1.5, 'dog', 0.9)]
    """
    found = []
    active = (probs >= threshold).cpu()
    for c, label in enumerate(labels):
        on = active[:, c].tolist() + [False]
        start = None
        for i, flag in enumerate(on):
            if flag and start is None:
                start = i
            elif not flag and start is not None:
                if (i - start) * resolution >= min_seconds:
                    score = float(probs[start:i, c].max())
                    found.append(
                        Segment(
                            round(offset + start * resolution, 3),
                            round(offset + i * resolution, 3),
                            label,
                            round(score, 4),
                        )
                    )
                start = None
    return sorted(found, key=lambda s: (s[0], s[1], s[2]))
