"""Where results, always keyed by head inside this package, take the shapes their callers expect.

Every interface of this package returns its results by head (``{"label": ClassResult}``, ``{"verb": ...,
"noun": ...}``: ``inference.results``). SpeechBrain's ``EncoderClassifier`` returns one result instead (the
``(out_prob, score, index, text_lab)`` tuple from ``classify_file``, a tensor from the ``classifier`` module), so
the two interfaces that are an ``EncoderClassifier`` (``StreamingClassifier``, ``AudioTagger``) and the exported
``classifier`` module give that shape. This module is the one place that makes it.
"""

__all__ = ["SeveralHeads", "classifier_module_output", "one_or_by_head"]


def one_or_by_head(results):
    """``results`` by head as ``EncoderClassifier.classify_file`` gives them: the one head's result itself (a
    model of several heads, served by ``MultiHeadAudioClassifier``, keeps the dict).

    Example
    -------
    >>> one_or_by_head({"label": 1}), one_or_by_head({"verb": 1, "noun": 2})
    (1, {'verb': 1, 'noun': 2})
    """
    return next(iter(results.values())) if len(results) == 1 else results


class SeveralHeads(dict):
    """What the exported ``classifier`` module gives SpeechBrain's ``EncoderClassifier`` for a model of several
    heads: their scores by name. ``EncoderClassifier`` expects one tensor and squeezes it; that call says which
    interface serves several heads."""

    def squeeze(self, *args, **kwargs):
        """Refuses: a model of several heads is served by ``MultiHeadAudioClassifier``, not ``EncoderClassifier``."""
        raise TypeError(
            f"this model has several heads ({', '.join(self)}): load it with "
            "speechbrain_datar.inference.interfaces.MultiHeadAudioClassifier.from_hparams, not EncoderClassifier"
        )


def classifier_module_output(scores):
    """A head's scores by name as the exported ``classifier`` module returns them to ``EncoderClassifier``: one
    tensor for one head, ``SeveralHeads`` for several.

    Example
    -------
    >>> import torch
    >>> classifier_module_output({"label": torch.zeros(1, 1, 3)}).shape
    torch.Size([1, 1, 3])
    >>> type(classifier_module_output({"verb": torch.zeros(1), "noun": torch.zeros(1)})).__name__
    'SeveralHeads'
    """
    return next(iter(scores.values())) if len(scores) == 1 else SeveralHeads(scores)
