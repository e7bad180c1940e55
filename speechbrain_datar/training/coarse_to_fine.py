"""Coarse-to-fine multi-phase training (Feng et al., "From Coarse to Fine: Efficient Training for
Audio Spectrogram Transformers"): train first on temporally compressed spectrograms, then fine-tune
at full resolution.

Compression methods, by a factor ``k`` along time:

- ``fshift``: the fbank frame shift is multiplied by ``k``;
- ``avgpool`` / ``maxpool``: average or max pooling along time, kernel = stride = ``k``, before
  tokenisation;
- ``patch``: patches ``k`` times wider along time (DATAR's patch stem, AST's patch embedding); the
  patch-embedding weights move between phases by PI-resize (``patch_resize: pi``) or bilinear
  resize (``bilinear``).

A phase is two calls: the feature module's ``set_time_resolution`` (the first three methods) and
the encoder's ``set_time_resolution`` (each encoder adapts what depends on its token grid: AST
and MBT's audio stream interpolate their positional embeddings, the Patch method resizes patch kernels; DATAR's
relative-position tables are in token units and serve any length). The schedule is a checkpoint
recoverable, so a killed run resumes in its phase; the ``Brain`` restarts the optimiser and the
learning-rate schedulers at every phase change, as the paper does.
"""

import json
import logging

from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from speechbrain_datar.errors import DataError
from speechbrain_datar.lobes.features import TIME_COMPRESSIONS
from speechbrain_datar.nnet.patch_embedding import PATCH_RESIZES

logger = logging.getLogger(__name__)

COMPRESSIONS = TIME_COMPRESSIONS + ("patch",)


@register_checkpoint_hooks
class CoarseToFineSchedule:
    """The phase schedule: which compression factor each epoch trains at; a checkpoint recoverable.

    Arguments
    ---------
    phases : list of dict or None
        ``[{factor: 4, epochs: 5}, {factor: 1, epochs: 15}]``; ``None`` or empty
        disables multi-phase training. The last phase must have factor 1.
    compression : str
        One of ``fshift``, ``avgpool``, ``maxpool``, ``patch``.
    patch_resize : str
        ``pi`` or ``bilinear``, how the Patch method moves patch-embedding weights.
    features : speechbrain_datar.lobes.features.Fbank or None
        The recipe's feature module (its time resolution follows the phase).
    encoder : torch.nn.Module or None
        The encoder; any module with ``set_time_resolution(factor, patch_resize)``.

    Example
    -------
    >>> schedule = CoarseToFineSchedule([{"factor": 4, "epochs": 2}, {"factor": 1, "epochs": 3}], "avgpool")
    >>> schedule.total_epochs, [schedule.phase_of_epoch(e) for e in range(1, 6)]
    (5, [0, 0, 1, 1, 1])
    """

    def __init__(self, phases=None, compression="fshift", patch_resize="pi", features=None, encoder=None):
        self.phases = [dict(factor=int(p["factor"]), epochs=int(p["epochs"])) for p in (phases or [])]
        if compression not in COMPRESSIONS:
            raise DataError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if patch_resize not in PATCH_RESIZES:
            raise DataError(f"patch_resize must be one of {PATCH_RESIZES}, got {patch_resize!r}")
        if any(p["factor"] < 1 or p["epochs"] < 1 for p in self.phases):
            raise ValueError(f"every phase needs a factor >= 1 and epochs >= 1: {self.phases}")
        if self.phases and self.phases[-1]["factor"] != 1:
            raise ValueError(f"the last phase must train at full resolution (factor 1): {self.phases}")
        self.compression = compression
        self.patch_resize = patch_resize
        self.features = features
        self.encoder = encoder
        self.current = None

    @property
    def enabled(self):
        """Whether there is more than one phase to run."""
        return len(self.phases) > 0

    @property
    def total_epochs(self):
        """Epochs of all phases."""
        return sum(p["epochs"] for p in self.phases)

    def phase_of_epoch(self, epoch):
        """Phase index of the 1-based ``epoch`` (epochs past the schedule stay in the last phase)."""
        end = 0
        for index, phase in enumerate(self.phases):
            end += phase["epochs"]
            if epoch <= end:
                return index
        return len(self.phases) - 1

    @property
    def factor(self):
        """Compression factor of the current phase (1 when disabled)."""
        if not self.enabled or self.current is None:
            return 1
        return self.phases[self.current]["factor"]

    def enter(self, phase):
        """Sets the features' and the encoder's time resolution to those of ``phase``."""
        factor = self.phases[phase]["factor"]
        patch = self.compression == "patch"
        if self.features is not None:
            self.features.set_time_resolution(factor, None if patch else self.compression)
        if self.encoder is not None:
            self.encoder.set_time_resolution(factor, self.patch_resize if patch else None)
        if phase != self.current:
            logger.info("coarse-to-fine: phase %d of %d, %s x%d", phase + 1, len(self.phases), self.compression, factor)
        self.current = phase

    def frames(self, full_resolution_frames):
        """A frame count of full-resolution features, in the current phase's frames."""
        return (
            self.features.frames(full_resolution_frames) if self.features is not None else int(full_resolution_frames)
        )

    # ------------------------------------------------------------ checkpoints
    @mark_as_saver
    def save(self, path):
        """Saves the current phase."""
        with open(path, "w") as f:
            json.dump({"phase": self.current, "phases": self.phases, "compression": self.compression}, f)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores the phase, putting the features and the encoder in its shapes before the weights load
        (the schedule is the checkpointer's first recoverable)."""
        with open(path) as f:
            phase = json.load(f)["phase"]
        if phase is not None:
            self.enter(phase)

    def resumed_phase(self, checkpointer):
        """The phase the checkpoint that ``checkpointer`` would recover was saved in (0 without one).

        Read before recovery: the model must have the phase's shapes before its
        weights and the optimiser's state load.
        """
        checkpoint = checkpointer.find_checkpoint() if checkpointer is not None else None
        names = [n for n, o in (checkpointer.recoverables.items() if checkpointer else []) if o is self]
        if checkpoint is None or not names or names[0] not in checkpoint.paramfiles:
            return 0
        with open(checkpoint.paramfiles[names[0]]) as f:
            return json.load(f)["phase"]
