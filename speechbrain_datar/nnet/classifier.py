"""Classification heads returning log-probabilities, as SpeechBrain's classifiers do."""

import torch
from torch import nn

from speechbrain_datar.nnet.layers import record_init_kwargs


class Classifier(nn.Module):
    """Linear head on an embedding: ``[batch, 1, dim] -> log-probabilities [batch, 1, n_classes]``.

    Arguments
    ---------
    input_size : int
        Embedding size.
    n_classes : int
        Number of classes.
    input_norm : bool
        Apply LayerNorm first (AST's ``mlp_head`` is LayerNorm + Linear).
    dropout : float
        Dropout on the embedding.

    Example
    -------
    >>> head = Classifier(16, 5)
    >>> out = head(torch.randn(3, 1, 16))
    >>> out.shape, bool(torch.allclose(out.exp().sum(-1), torch.ones(3, 1)))
    (torch.Size([3, 1, 5]), True)
    """

    def __init__(self, input_size, n_classes, input_norm=False, dropout=0.0):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        if n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {n_classes}")
        self.norm = nn.LayerNorm(input_size) if input_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(input_size, n_classes)

    def forward(self, x):
        """Log-probabilities ``[batch, 1, n_classes]`` (a 2-D input gets the middle axis added)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return torch.log_softmax(self.out(self.dropout(self.norm(x))), dim=-1)


class MultiHeadClassifier(nn.Module):
    """Several named heads on one embedding (EPIC-Kitchens: verb and noun).

    Arguments
    ---------
    input_size : int
        Embedding size.
    n_classes : dict
        Head name -> number of classes, e.g. ``{verb: 97, noun: 300}``.
    input_norm : bool
        LayerNorm before each head.
    dropout : float
        Dropout on the embedding.

    Example
    -------
    >>> heads = MultiHeadClassifier(16, {"verb": 4, "noun": 7})
    >>> {name: out.shape for name, out in heads(torch.randn(2, 1, 16)).items()}
    {'verb': torch.Size([2, 1, 4]), 'noun': torch.Size([2, 1, 7])}
    """

    def __init__(self, input_size, n_classes, input_norm=False, dropout=0.0):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        if not n_classes:
            raise ValueError("n_classes must name at least one head")
        self.heads = nn.ModuleDict(
            {name: Classifier(input_size, int(n), input_norm, dropout) for name, n in n_classes.items()}
        )

    def forward(self, x):
        """Returns a dict of log-probabilities ``[batch, 1, n_classes]``, one per head."""
        return {name: head(x) for name, head in self.heads.items()}


def build_classifier(input_size, n_classes, heads=None, input_norm=False, dropout=0.0):
    """A ``Classifier`` with ``n_classes`` outputs, or, if ``heads`` names several, a ``MultiHeadClassifier``.

    Lets one hparams file serve single-head recipes (``--n_classes=309``) and
    EPIC-Kitchens' verb/noun heads (``--classifier_heads="{verb: 97, noun: 300}"``).

    Example
    -------
    >>> type(build_classifier(8, 3)).__name__, type(build_classifier(8, 3, {"verb": 2, "noun": 3})).__name__
    ('Classifier', 'MultiHeadClassifier')
    """
    if heads:
        return MultiHeadClassifier(input_size, dict(heads), input_norm, dropout)
    return Classifier(input_size, int(n_classes), input_norm, dropout)
