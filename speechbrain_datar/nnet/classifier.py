"""Classification heads returning log-probabilities, as SpeechBrain's classifiers do."""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.nnet.layers import record_init_kwargs


class Classifier(nn.Module):
    """Linear head on an embedding: ``[batch, 1, dim] -> log-probabilities [batch, 1, n_classes]``.

    Arguments
    ---------
    input_size : int
        Embedding size.
    n_classes : int or None
        Number of classes; ``None`` leaves it to ``set_n_classes`` (the recipes
        size heads from the prepared label encoder).
    input_norm : bool
        Apply LayerNorm first (AST's ``mlp_head`` is LayerNorm + Linear).
    dropout : float
        Dropout on the embedding.
    multi_label : bool
        Independent classes (multi-label tagging): each output is the log of a sigmoid, the
        probability that the class is present, instead of a log-softmax over the classes.

    Example
    -------
    >>> head = Classifier(16, 5)
    >>> out = head(torch.randn(3, 1, 16))
    >>> out.shape, bool(torch.allclose(out.exp().sum(-1), torch.ones(3, 1)))
    (torch.Size([3, 1, 5]), True)
    """

    def __init__(self, input_size, n_classes=None, input_norm=False, dropout=0.0, multi_label=False):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        self.multi_label = bool(multi_label)
        self.input_size = input_size
        self.norm = nn.LayerNorm(input_size) if input_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.n_classes, self.out = None, None
        if n_classes is not None:
            self.set_n_classes(n_classes)

    def set_n_classes(self, n_classes):
        """Sizes the output layer (a new, freshly initialised one if the size changes)."""
        n_classes = int(n_classes)
        if n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {n_classes}")
        if n_classes != self.n_classes:
            existing = next(self.parameters(), None)
            self.out = nn.Linear(self.input_size, n_classes, device=None if existing is None else existing.device)
            self.n_classes = n_classes
            self.init_kwargs["n_classes"] = n_classes

    def forward(self, x):
        """Log-probabilities ``[batch, 1, n_classes]`` (a 2-D input gets the middle axis added)."""
        if self.out is None:
            raise RuntimeError("this Classifier has no n_classes yet: call set_n_classes first")
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.log_probabilities(self.out(self.dropout(self.norm(x))))

    def log_probabilities(self, logits):
        """Log-softmax over the classes, or each class's log-sigmoid (``multi_label``)."""
        return F.logsigmoid(logits) if self.multi_label else torch.log_softmax(logits, dim=-1)


class ModalityClassifier(Classifier):
    """MBT's head: one linear layer shared by every modality's embedding (``[batch, M, dim]``).

    In training it returns each modality's log-probabilities ``[batch, M, n_classes]``
    (the loss averages them, as MBT trains each CLS); in evaluation the logits are
    averaged over the modalities first, giving ``[batch, 1, n_classes]``.

    Example
    -------
    >>> head = ModalityClassifier(8, 3)
    >>> head(torch.randn(2, 2, 8)).shape, head.eval()(torch.randn(2, 2, 8)).shape
    (torch.Size([2, 2, 3]), torch.Size([2, 1, 3]))
    """

    def forward(self, x):
        """Per-modality log-probabilities in training, those of the averaged logits in evaluation."""
        if self.out is None:
            raise RuntimeError("this ModalityClassifier has no n_classes yet: call set_n_classes first")
        logits = self.out(self.dropout(self.norm(x)))
        if not self.training:
            logits = logits.mean(dim=1, keepdim=True)
        return self.log_probabilities(logits)


class MultiHeadClassifier(nn.Module):
    """Several named heads on one embedding (EPIC-Kitchens: verb and noun).

    Arguments
    ---------
    input_size : int
        Embedding size.
    n_classes : dict or list
        Head name -> number of classes, e.g. ``{verb: 97, noun: 300}``; a list of
        names (or ``None`` sizes) leaves the sizes to ``set_n_classes``.
    input_norm : bool
        LayerNorm before each head.
    dropout : float
        Dropout on the embedding.
    per_modality : bool
        Each head a ``ModalityClassifier`` (audio-visual models with one embedding per modality).
    multi_label : bool
        Each head's classes independent (log-sigmoid outputs, multi-label tagging).

    Example
    -------
    >>> heads = MultiHeadClassifier(16, {"verb": 4, "noun": 7})
    >>> {name: out.shape for name, out in heads(torch.randn(2, 1, 16)).items()}
    {'verb': torch.Size([2, 1, 4]), 'noun': torch.Size([2, 1, 7])}
    """

    def __init__(self, input_size, n_classes, input_norm=False, dropout=0.0, per_modality=False, multi_label=False):
        super().__init__()
        if not n_classes:
            raise ValueError("n_classes must name at least one head")
        sizes = dict(n_classes) if isinstance(n_classes, dict) else dict.fromkeys(n_classes)
        head = ModalityClassifier if per_modality else Classifier
        self.per_modality = bool(per_modality)
        self.heads = nn.ModuleDict({str(name): head(input_size, n, input_norm, dropout, multi_label)
                                    for name, n in sizes.items()})

    @property
    def init_kwargs(self):
        """The constructor arguments, with each head's current size (for the exported hparams)."""
        first = next(iter(self.heads.values())).init_kwargs
        sizes = {name: head.n_classes for name, head in self.heads.items()}
        return dict(first, n_classes=sizes, per_modality=self.per_modality)

    def set_n_classes(self, sizes):
        """Sizes the named heads: ``{name: n_classes}``."""
        for name, n_classes in sizes.items():
            self.heads[name].set_n_classes(n_classes)

    def forward(self, x):
        """Returns a dict of log-probabilities ``[batch, 1, n_classes]``, one per head."""
        return {name: head(x) for name, head in self.heads.items()}


def build_classifier(input_size, n_classes=None, heads=None, input_norm=False, dropout=0.0, per_modality=False,
                     multi_label=False):
    """A ``Classifier`` with ``n_classes`` outputs, or, if ``heads`` names several, a ``MultiHeadClassifier``;
    with ``per_modality``, heads that take one embedding per modality (``ModalityClassifier``, MBT); with
    ``multi_label``, independent classes (log-sigmoid outputs, multi-label tagging).

    Lets one hparams file serve single-head recipes and EPIC-Kitchens' verb and noun
    heads (``heads: [verb, noun]``, or with sizes ``{verb: 97, noun: 300}``). Sizes
    left as ``None`` follow the prepared labels.

    Example
    -------
    >>> type(build_classifier(8, 3)).__name__, type(build_classifier(8, 3, {"verb": 2, "noun": 3})).__name__
    ('Classifier', 'MultiHeadClassifier')
    >>> type(build_classifier(8, 3, per_modality=True)).__name__
    'ModalityClassifier'
    """
    if heads:
        return MultiHeadClassifier(input_size, heads, input_norm, dropout, per_modality, multi_label)
    return (ModalityClassifier if per_modality else Classifier)(input_size, n_classes, input_norm, dropout, multi_label)


def is_multi_label(head):
    """Whether a head (or any of its heads) has independent classes (``multi_label``).

    Example
    -------
    >>> is_multi_label(Classifier(8, 3)), is_multi_label(build_classifier(8, heads={"a": 2}, multi_label=True))
    (False, True)
    """
    return any(getattr(module, "multi_label", False) for module in head.modules())


def binary_cross_entropy(log_probs, targets):
    """Mean binary cross-entropy of per-class log-probabilities (``multi_label`` heads) against targets in
    [0, 1] (multi-hot, or mixed by mixup): ``-(t log p + (1 - t) log(1 - p))``.

    ``log(1 - p)`` comes from ``log p`` without leaving the log domain (``log(-expm1(log p))``, exact for
    logits up to about 87 in float32, where ``log p`` is still above zero), computed in float32.

    Example
    -------
    >>> logits = torch.tensor([[2.0, -1.0]]); targets = torch.tensor([[1.0, 0.0]])
    >>> expected = F.binary_cross_entropy_with_logits(logits, targets)
    >>> bool(torch.allclose(binary_cross_entropy(F.logsigmoid(logits), targets), expected))
    True
    """
    log_probs = log_probs.float().clamp(max=-torch.finfo(torch.float32).tiny)  # p = 1 exactly: a finite loss
    log_not = torch.where(log_probs > -0.6931, torch.log(-torch.expm1(log_probs)), torch.log1p(-torch.exp(log_probs)))
    return -(targets * log_probs + (1.0 - targets) * log_not).mean()

