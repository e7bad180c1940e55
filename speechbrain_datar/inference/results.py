"""What the interfaces return: small named types, always keyed by head.

Every interface of this package (``inference.interfaces``, ``inference.onnx_runtime``) decodes a model's scores
into ``{head: result}``: ``{"label": ...}`` for a model of one head, ``{"verb": ..., "noun": ...}`` for EPIC's.
A result is a named tuple, so it unpacks as the plain tuples of SpeechBrain's ``EncoderClassifier`` do::

    out_prob, score, index, text_lab = results["label"]
    results["label"].text_lab

The shapes SpeechBrain's own API expects of a one-head model (one result, not a dict; a tensor from the
``classifier`` module) are made in ``inference.adapters`` and nowhere else.
"""

from typing import NamedTuple

import torch

__all__ = ["ClassResult", "ClassifiedClip", "Segment", "Tags", "Timeline", "best_class", "tags"]


class ClassResult(NamedTuple):
    """A head's best class for each clip of a batch, as ``EncoderClassifier.classify_batch`` gives it."""

    out_prob: torch.Tensor  #: ``[batch, n_classes]`` log-probabilities
    score: torch.Tensor  #: ``[batch]`` the best class's log-probability
    index: torch.Tensor  #: ``[batch]`` the best class's index
    text_lab: list  #: the best class's name, per clip


class ClassifiedClip(ClassResult):
    """A ``ClassResult`` of an audio-visual model, and ``modalities``: what the file gave the model
    (``("audio", "video")``, or one of them).

    Example
    -------
    >>> clip = ClassifiedClip(torch.zeros(1, 2), torch.zeros(1), torch.zeros(1), ["dog"], modalities=["audio"])
    >>> clip.text_lab, clip.modalities
    (['dog'], ('audio',))
    """

    def __new__(cls, out_prob, score, index, text_lab, modalities=()):
        clip = super().__new__(cls, out_prob, score, index, text_lab)
        clip.modalities = tuple(modalities)
        return clip


class Tags(NamedTuple):
    """A multi-label head's classes for each clip of a batch: every class's probability, and per clip the
    classes whose probability reaches the threshold, highest first."""

    probs: torch.Tensor  #: ``[batch, n_classes]`` probabilities
    scores: list  #: per clip, the probabilities of its tags
    indices: list  #: per clip, its tags' class indices
    labels: list  #: per clip, its tags' names


class Segment(NamedTuple):
    """A stretch of a recording where a class's probability reaches the threshold."""

    start: float  #: seconds
    end: float  #: seconds
    label: str
    score: float  #: the class's highest probability over the stretch


class Timeline(NamedTuple):
    """When a head's classes sound in a recording."""

    probs: torch.Tensor  #: ``[rows, n_classes]`` probabilities, one row per window or time column
    resolution: float  #: seconds per row
    segments: list  #: ``Segment`` s, sorted by start


def best_class(log_probs, names):
    """A head's ``ClassResult``: the best class of every clip of ``log_probs`` ``[batch, (1,) n_classes]``,
    named from ``names`` (class names by index, or a function of the indices that names them, as
    ``CategoricalEncoder.decode_torch``).

    Example
    -------
    >>> best_class(torch.log(torch.tensor([[0.2, 0.8]])), ["cat", "dog"]).text_lab
    ['dog']
    """
    out_prob = log_probs.reshape(log_probs.shape[0], -1)
    score, index = torch.max(out_prob, dim=-1)
    labels = names(index) if callable(names) else [names[int(i)] for i in index]
    return ClassResult(out_prob, score, index, labels)


def tags(log_probs, names, threshold):
    """A multi-label head's ``Tags``: the classes of every clip whose probability reaches ``threshold``.

    Example
    -------
    >>> tags(torch.log(torch.tensor([[0.9, 0.2, 0.6]])), ["dog", "cat", "rain"], 0.5).labels
    [['dog', 'rain']]
    """
    probs = log_probs.reshape(log_probs.shape[0], -1).exp()
    found_scores, indices, labels = [], [], []
    for row in probs:
        chosen = [int(i) for i in torch.argsort(row, descending=True) if row[i] >= threshold]
        found_scores.append([float(row[i]) for i in chosen])
        indices.append(chosen)
        labels.append([names[i] for i in chosen])
    return Tags(probs, found_scores, indices, labels)
