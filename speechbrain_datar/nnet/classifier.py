"""Classification heads: each returns ``{name: log-probabilities}`` and computes its own loss.

Every head, whatever it is (one output, several named outputs, one row per modality), has the same
contract, so that nothing that uses one asks which kind it holds:

- ``head(embeddings)`` returns a dict ``{name: log_probs [batch, rows, n_classes]}`` (one entry per named
  output; ``rows`` is 1, or one per modality in training for ``per_modality`` heads);
- ``head.names`` are its outputs' names, ``head.n_classes_by_name`` their sizes, ``head.set_n_classes``
  sizes them from the prepared labels, ``head.multi_label`` says whether classes are independent;
- ``head.loss(predictions, targets, mix=None)`` is the training loss: the negative log-likelihood of the
  target class (single-label), or the binary cross-entropy of multi-hot targets (multi-label), per row,
  against the targets mixed as ``mix`` (``training.mixup.MixedBatch``) says.

Only the boundary that SpeechBrain's ``EncoderClassifier`` calls unwraps a single output into a tensor
(``inference.sliding_window.WindowScoreAverage``).
"""

import speechbrain as sb
import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.errors import DataError
from speechbrain_datar.nnet.layers import record_init_kwargs

CLASS_REDUCTIONS = ("mean", "sum")


class Classifier(nn.Module):
    """Linear head on an embedding: ``[batch, rows, dim] -> {name: log-probabilities [batch, rows, n_classes]}``.

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
    name : str
        The output's name: the label key it predicts (``label``, ``labels``, ``verb``...).
    label_smoothing : float
        Single-label: SpeechBrain's smoothing of the NLL; multi-label: the targets become
        ``t * (1 - s) + s / n_classes``, as scenic smooths multi-hot targets.
    class_reduction : str
        Multi-label: how the binary cross-entropy of the classes is reduced for each clip, ``mean``
        (PyTorch's and AST's) or ``sum`` (scenic's, MBT's; a gradient ``n_classes`` times larger).

    Example
    -------
    >>> head = Classifier(16, 5)
    >>> out = head(torch.randn(3, 1, 16))
    >>> list(out), out["label"].shape, bool(torch.allclose(out["label"].exp().sum(-1), torch.ones(3, 1)))
    (['label'], torch.Size([3, 1, 5]), True)
    >>> float(head.loss(out, {"label": torch.tensor([0, 4, 2])}).detach()) > 0
    True
    """

    def __init__(
        self,
        input_size,
        n_classes=None,
        input_norm=False,
        dropout=0.0,
        multi_label=False,
        name="label",
        label_smoothing=0.0,
        class_reduction="mean",
    ):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        if class_reduction not in CLASS_REDUCTIONS:
            raise DataError(f"class_reduction must be one of {CLASS_REDUCTIONS}, got {class_reduction!r}")
        self.multi_label, self.name = bool(multi_label), str(name)
        self.label_smoothing, self.class_reduction = float(label_smoothing), class_reduction
        self.input_size = input_size
        self.norm = nn.LayerNorm(input_size) if input_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.n_classes, self.out = None, None
        if n_classes is not None:
            self.set_n_classes(n_classes)

    @property
    def names(self):
        """The names of the outputs."""
        return (self.name,)

    @property
    def n_classes_by_name(self):
        """``{name: n_classes}`` (``None`` while unsized)."""
        return {self.name: self.n_classes}

    def set_n_classes(self, n_classes):
        """Sizes the output layer (a new, freshly initialised one if the size changes); ``{name: n}`` also
        renames the output."""
        if isinstance(n_classes, dict):
            if len(n_classes) != 1:
                raise ValueError(f"a Classifier has one output, not {list(n_classes)}")
            ((name, n_classes),) = n_classes.items()
            self.name = self.init_kwargs["name"] = str(name)
        n_classes = int(n_classes)
        if n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {n_classes}")
        if n_classes != self.n_classes:
            existing = next(self.parameters(), None)
            self.out = nn.Linear(self.input_size, n_classes, device=None if existing is None else existing.device)
            self.n_classes = n_classes
            self.init_kwargs["n_classes"] = n_classes

    def logits(self, x):
        """Logits ``[batch, rows, n_classes]`` (a 2-D input gets the middle axis added)."""
        if self.out is None:
            raise RuntimeError(f"this {type(self).__name__} has no n_classes yet: call set_n_classes first")
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.out(self.dropout(self.norm(x)))

    def forward(self, x):
        """``{name: log-probabilities [batch, rows, n_classes]}``."""
        return {self.name: self.log_probabilities(self.logits(x))}

    def log_probabilities(self, logits):
        """Log-softmax over the classes, or each class's log-sigmoid (``multi_label``)."""
        return F.logsigmoid(logits) if self.multi_label else torch.log_softmax(logits, dim=-1)

    def loss(self, predictions, targets, mix=None):
        """The training loss of this head's output, averaged over its rows (MBT: the modalities).

        Arguments
        ---------
        predictions : dict
            What ``forward`` returned.
        targets : dict
            ``{name: targets}``: class indices ``[batch]`` or ``[batch, 1]`` (single-label), multi-hot
            vectors ``[batch, n_classes]`` (multi-label).
        mix : MixedBatch or None
            Mixup of the batch: row ``r``'s loss is ``w * loss(targets) + (1 - w) * loss(targets[perm])``
            with ``w = mix.weight(r)`` (both losses are linear in the targets).
        """
        log_probs, target = predictions[self.name], targets[self.name]
        target = target.unsqueeze(1) if self.multi_label else target.reshape(-1, 1)
        rows = log_probs.shape[1]
        if mix is not None and rows < mix.n_weights:
            # scenic refuses this too: one output for two differently mixed modalities has no target
            raise DataError("modality_mixup needs one output per modality (pooling: cls, both modalities)")
        total = 0.0
        for row in range(rows):
            row_log_probs = log_probs[:, row : row + 1]
            loss = self._row_loss(row_log_probs, target)
            if mix is not None:
                weight = mix.weight(row)
                loss = weight * loss + (1 - weight) * self._row_loss(row_log_probs, target[mix.perm])
            total = total + loss
        return total / rows

    def distillation_loss(self, predictions, teacher, temperature=1.0, mix=None):
        """The distillation term of this head's output against a teacher's class probabilities, averaged over
        its rows (MBT: the modalities), as ``loss`` averages the task loss.

        Single-label: ``T**2 * KL(teacher_T || student_T)``, both distributions at temperature ``T``
        (Hinton et al., 2015: the ``T**2`` keeps the gradients' scale as ``T`` changes). The student's
        ``log_softmax(log_probs / T)`` equals ``log_softmax(logits / T)``, so the head's log-probabilities
        are enough; the teacher's distribution is ``softmax(log(p) / T)``. Multi-label: binary cross-entropy
        against the teacher's probabilities (no temperature).

        Arguments
        ---------
        predictions : dict
            What ``forward`` returned.
        teacher : dict
            ``{name: probabilities [batch, n_classes]}`` in this head's class order.
        temperature : float
            ``T`` of single-label heads.
        mix : MixedBatch or None
            Mixup of the batch: row ``r``'s teacher target is ``w * p + (1 - w) * p[perm]`` (after the
            temperature), ``w = mix.weight(r)``, as the task's targets are mixed.

        Example
        -------
        >>> head = Classifier(4, 3)
        >>> predictions = head(torch.randn(2, 4))
        >>> same = {"label": predictions["label"].exp().squeeze(1)}
        >>> float(head.distillation_loss(predictions, same, temperature=1.0)) < 1e-6
        True
        """
        log_probs, probs = predictions[self.name], teacher[self.name].to(predictions[self.name].device).float()
        if self.multi_label:
            targets = probs
        else:
            targets = torch.softmax(torch.log(probs.clamp(min=1e-12)) / temperature, dim=-1)
        rows, total = log_probs.shape[1], 0.0
        for row in range(rows):
            target = targets
            if mix is not None:
                weight = mix.weight(row)
                target = weight * targets + (1 - weight) * targets[mix.perm]
            total = total + self._row_distillation(log_probs[:, row], target, temperature)
        return total / rows

    def _row_distillation(self, log_probs, targets, temperature):
        if self.multi_label:
            loss = binary_cross_entropy(log_probs, targets)
            return loss * targets.shape[-1] if self.class_reduction == "sum" else loss
        student = torch.log_softmax(log_probs.float() / temperature, dim=-1)
        kl = F.kl_div(student, targets, reduction="sum") / log_probs.shape[0]
        return kl * temperature**2

    def _row_loss(self, log_probs, targets):
        if not self.multi_label:
            return sb.nnet.losses.nll_loss(log_probs, targets, label_smoothing=self.label_smoothing)
        targets = targets.expand_as(log_probs)
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / targets.shape[-1]
        loss = binary_cross_entropy(log_probs, targets)
        return loss * targets.shape[-1] if self.class_reduction == "sum" else loss


class ModalityClassifier(Classifier):
    """MBT's head: one linear layer shared by every modality's embedding (``[batch, M, dim]``).

    In training it returns each modality's log-probabilities ``[batch, M, n_classes]``
    (the loss averages them, as MBT trains each CLS); in evaluation the logits are
    averaged over the modalities first, giving ``[batch, 1, n_classes]``.

    Example
    -------
    >>> head = ModalityClassifier(8, 3)
    >>> head(torch.randn(2, 2, 8))["label"].shape, head.eval()(torch.randn(2, 2, 8))["label"].shape
    (torch.Size([2, 2, 3]), torch.Size([2, 1, 3]))
    """

    def forward(self, x):
        """Per-modality log-probabilities in training, those of the averaged logits in evaluation."""
        logits = self.logits(x)
        if not self.training:
            logits = logits.mean(dim=1, keepdim=True)
        return {self.name: self.log_probabilities(logits)}


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
    multi_label, label_smoothing, class_reduction
        As for ``Classifier``, for every head.

    Example
    -------
    >>> heads = MultiHeadClassifier(16, {"verb": 4, "noun": 7})
    >>> {name: out.shape for name, out in heads(torch.randn(2, 1, 16)).items()}
    {'verb': torch.Size([2, 1, 4]), 'noun': torch.Size([2, 1, 7])}
    """

    def __init__(
        self,
        input_size,
        n_classes,
        input_norm=False,
        dropout=0.0,
        per_modality=False,
        multi_label=False,
        label_smoothing=0.0,
        class_reduction="mean",
    ):
        super().__init__()
        if not n_classes:
            raise ValueError("n_classes must name at least one head")
        sizes = dict(n_classes) if isinstance(n_classes, dict) else dict.fromkeys(n_classes)
        head = ModalityClassifier if per_modality else Classifier
        self.per_modality = bool(per_modality)
        self.heads = nn.ModuleDict(
            {
                str(name): head(
                    input_size, n, input_norm, dropout, multi_label, str(name), label_smoothing, class_reduction
                )
                for name, n in sizes.items()
            }
        )

    @property
    def init_kwargs(self):
        """The constructor arguments, with each head's current size (for the exported hparams)."""
        first = dict(next(iter(self.heads.values())).init_kwargs)
        first.pop("name", None)
        return dict(first, n_classes=self.n_classes_by_name, per_modality=self.per_modality)

    @property
    def names(self):
        """The names of the outputs."""
        return tuple(self.heads)

    @property
    def n_classes_by_name(self):
        """``{name: n_classes}`` (``None`` while unsized)."""
        return {name: head.n_classes for name, head in self.heads.items()}

    @property
    def multi_label(self):
        """Whether the classes of the heads are independent."""
        return any(head.multi_label for head in self.heads.values())

    def set_n_classes(self, sizes):
        """Sizes the named heads: ``{name: n_classes}``."""
        unknown = sorted(set(sizes) - set(self.heads))
        if unknown:
            raise ValueError(f"no head named {unknown} (the heads are {list(self.heads)})")
        for name, n_classes in sizes.items():
            self.heads[name].set_n_classes(n_classes)

    def forward(self, x):
        """``{name: log-probabilities [batch, rows, n_classes]}``, one per head."""
        return {name: out for head in self.heads.values() for name, out in head(x).items()}

    def loss(self, predictions, targets, mix=None):
        """The sum of the heads' losses."""
        return sum(head.loss(predictions, targets, mix) for head in self.heads.values())

    def distillation_loss(self, predictions, teacher, temperature=1.0, mix=None):
        """The sum of the heads' distillation terms (``Classifier.distillation_loss``)."""
        return sum(head.distillation_loss(predictions, teacher, temperature, mix) for head in self.heads.values())


def build_classifier(
    input_size,
    n_classes=None,
    heads=None,
    input_norm=False,
    dropout=0.0,
    per_modality=False,
    multi_label=False,
    label_smoothing=0.0,
    class_reduction="mean",
):
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
    settings = dict(
        input_norm=input_norm,
        dropout=dropout,
        multi_label=multi_label,
        label_smoothing=label_smoothing,
        class_reduction=class_reduction,
    )
    if heads:
        return MultiHeadClassifier(input_size, heads, per_modality=per_modality, **settings)
    return (ModalityClassifier if per_modality else Classifier)(input_size, n_classes, **settings)


def is_multi_label(head):
    """Whether a head has independent classes (``head.multi_label``; kept for version 0.2's callers).

    Example
    -------
    >>> is_multi_label(Classifier(8, 3)), is_multi_label(build_classifier(8, heads={"a": 2}, multi_label=True))
    (False, True)
    """
    return bool(head.multi_label)


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
