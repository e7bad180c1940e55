"""Per-step learning-rate schedules in SpeechBrain's style: ``scheduler(optimizer) -> (old_lr, new_lr)``.

The ``Brain`` calls a per-step scheduler (hparams key ``lr_scheduler``) before every
optimiser step, so the step runs at the returned learning rate. Any SpeechBrain
per-step scheduler works there (``NoamScheduler``, ``LinearWarmupScheduler``, ...);
``WarmupCosineScheduler`` is defined in epochs, as transformer recipes usually state it.
"""

import math

from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from speechbrain_datar.errors import DataError


@register_checkpoint_hooks
class WarmupCosineScheduler:
    """Linear warm-up from 0 to ``lr_initial``, then cosine decay to ``lr_initial * final_ratio``.

    Arguments
    ---------
    lr_initial : float
        Peak learning rate, reached at the end of the warm-up.
    warmup_epochs : float
        Length of the warm-up (fractions allowed: MBT warms up for 2.5 epochs).
    total_epochs : float
        Epochs over which the schedule runs; the rate stays at its final value after.
    decay : str
        ``"cosine"``, or ``"constant"`` (the peak rate after the warm-up).
    final_ratio : float
        Final rate of the cosine decay, as a fraction of the peak.
    steps_per_epoch : int or None
        Optimiser steps in an epoch; the ``Brain`` sets it from its training loader.

    Example
    -------
    >>> import torch
    >>> optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> scheduler = WarmupCosineScheduler(1.0, warmup_epochs=1, total_epochs=3, steps_per_epoch=2)
    >>> [round(scheduler(optimizer)[1], 3) for _ in range(7)]
    [0.5, 1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """

    def __init__(
        self, lr_initial, warmup_epochs=0.0, total_epochs=1.0, decay="cosine", final_ratio=0.0, steps_per_epoch=None
    ):
        if decay not in ("cosine", "constant"):
            raise DataError(f"decay must be 'cosine' or 'constant', got {decay!r}")
        self.lr_initial = float(lr_initial)
        self.warmup_epochs = float(warmup_epochs)
        self.total_epochs = float(total_epochs)
        self.decay = decay
        self.final_ratio = float(final_ratio)
        self.steps_per_epoch = steps_per_epoch
        self.n_steps = 0

    def set_steps_per_epoch(self, steps):
        """Called by the ``Brain`` once it knows its training loader."""
        self.steps_per_epoch = max(1, int(steps))

    def lr_at(self, step):
        """Learning rate of optimiser step ``step`` (1-based)."""
        if self.steps_per_epoch is None:
            raise RuntimeError("WarmupCosineScheduler needs steps_per_epoch before its first step")
        warmup = self.warmup_epochs * self.steps_per_epoch
        if step <= warmup:
            return self.lr_initial * step / warmup
        if self.decay == "constant":
            return self.lr_initial
        span = max(1.0, self.total_epochs * self.steps_per_epoch - warmup)
        progress = min(1.0, (step - warmup) / span)
        scale = self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr_initial * scale

    def __call__(self, optimizer):
        """Sets the rate of the next step; returns ``(previous rate, new rate)``."""
        self.n_steps += 1
        old = optimizer.param_groups[0]["lr"]
        new = self.lr_at(self.n_steps)
        for group in optimizer.param_groups:
            group["lr"] = new
        return old, new

    @mark_as_saver
    def save(self, path):
        """Saves the step count (the rest comes from the hparams)."""
        with open(path, "w") as f:
            f.write(str(self.n_steps))

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores the step count."""
        with open(path) as f:
            self.n_steps = int(f.read().strip())
