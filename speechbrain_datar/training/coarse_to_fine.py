"""Coarse-to-fine multi-phase training (Feng et al., "From Coarse to Fine: Efficient Training for
Audio Spectrogram Transformers"): train first on temporally compressed spectrograms, then fine-tune
at full resolution.

Compression methods, by a factor ``k`` along time:

- ``fshift``: the fbank frame shift is multiplied by ``k``;
- ``avgpool`` / ``maxpool``: average or max pooling along time, kernel = stride = ``k``, on the
  normalised features before tokenisation;
- ``patch``: patches ``k`` times wider along time (DATAR's patch stem, AST's patch embedding); the
  patch-embedding weights move between phases by PI-resize (``patch_resize: pi``) or bilinear
  resize (``bilinear``).

At each transition the weights that depend on the token grid are adapted (AST: the positional
embedding is interpolated to the new number of time patches; the Patch method: the patch embedding
is resized; DATAR's relative-position tables are in token units and serve any length), and the
optimiser and learning-rate scheduler restart from their initial values, as the paper does. The
schedule is a checkpoint recoverable, so a killed run resumes in the right phase.
"""

import json
import logging

import torch
import torch.nn.functional as F
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from torch import nn

from speechbrain_datar.nnet.layers import unwrap_module

logger = logging.getLogger(__name__)

COMPRESSIONS = ("fshift", "avgpool", "maxpool", "patch")
PATCH_RESIZES = ("pi", "bilinear")


def bilinear_resize_matrix(old_shape, new_shape):
    """The linear map ``R^(h*w) -> R^(h'*w')`` of bilinear resizing (``align_corners=False``).

    Example
    -------
    >>> bilinear_resize_matrix((2, 2), (2, 4)).shape
    torch.Size([8, 4])
    """
    n = old_shape[0] * old_shape[1]
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *old_shape)
    resized = F.interpolate(basis, size=tuple(new_shape), mode="bilinear", align_corners=False)
    return resized.reshape(n, -1).t()


def resize_patch_weights(weight, new_shape, method="pi"):
    """Resizes patch-embedding kernels ``[out, in, h, w]`` to ``new_shape``.

    ``bilinear`` interpolates the kernels. ``pi`` (PI-resize, FlexiViT) solves
    ``<x, w> = <B x, w'>`` for inputs ``x`` resized by the bilinear map ``B``:
    ``w' = pinv(B^T) w``, exact when ``B`` enlarges the patch.

    Example
    -------
    >>> w = torch.randn(3, 1, 4, 4); x = torch.randn(4, 4)
    >>> wide = resize_patch_weights(w, (4, 8), "pi")
    >>> x_wide = F.interpolate(x[None, None], size=(4, 8), mode="bilinear", align_corners=False)[0, 0]
    >>> torch.allclose((w[:, 0] * x).sum((1, 2)), (wide[:, 0] * x_wide).sum((1, 2)), atol=1e-5)
    True
    """
    if method not in PATCH_RESIZES:
        raise ValueError(f"patch resize must be one of {PATCH_RESIZES}, got {method!r}")
    old_shape = tuple(weight.shape[-2:])
    new_shape = tuple(new_shape)
    if old_shape == new_shape:
        return weight.clone()
    if method == "bilinear":
        return F.interpolate(weight, size=new_shape, mode="bilinear", align_corners=False)
    resize = bilinear_resize_matrix(old_shape, new_shape)  # new x old
    flat = weight.reshape(-1, old_shape[0] * old_shape[1]).double()
    new = flat @ torch.linalg.pinv(resize.t()).t()
    return new.reshape(*weight.shape[:-2], *new_shape).to(weight.dtype)


class TimePooling(nn.Module):
    """Average or max pooling along time of ``[batch, time, n_mels]`` features (kernel = stride = factor).

    Example
    -------
    >>> TimePooling(4, "avg")(torch.randn(2, 101, 8)).shape
    torch.Size([2, 26, 8])
    """

    def __init__(self, factor, kind="avg"):
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {kind!r}")
        self.factor, self.kind = int(factor), kind

    def forward(self, feats):
        """Pools; the last, partial window is kept (ceil mode), so relative lengths stay valid."""
        if self.factor == 1:
            return feats
        x = feats.transpose(1, 2)
        pool = F.avg_pool1d if self.kind == "avg" else F.max_pool1d
        kwargs = {"count_include_pad": False} if self.kind == "avg" else {}
        return pool(x, self.factor, self.factor, ceil_mode=True, **kwargs).transpose(1, 2)


@register_checkpoint_hooks
class CoarseToFineSchedule:
    """The phase schedule and what changes between phases; a checkpoint recoverable.

    Arguments
    ---------
    phases : list of dict or None
        ``[{factor: 4, epochs: 5}, {factor: 1, epochs: 15}]``; ``None`` or empty
        disables multi-phase training. The last phase must have factor 1.
    compression : str
        One of ``fshift``, ``avgpool``, ``maxpool``, ``patch``.
    patch_resize : str
        ``pi`` or ``bilinear``, how the Patch method moves patch-embedding weights.

    Example
    -------
    >>> schedule = CoarseToFineSchedule([{"factor": 4, "epochs": 2}, {"factor": 1, "epochs": 3}], "avgpool")
    >>> schedule.total_epochs, [schedule.phase_of_epoch(e) for e in range(1, 6)]
    (5, [0, 0, 1, 1, 1])
    """

    def __init__(self, phases=None, compression="fshift", patch_resize="pi"):
        self.phases = [dict(factor=int(p["factor"]), epochs=int(p["epochs"])) for p in (phases or [])]
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if patch_resize not in PATCH_RESIZES:
            raise ValueError(f"patch_resize must be one of {PATCH_RESIZES}, got {patch_resize!r}")
        if any(p["factor"] < 1 or p["epochs"] < 1 for p in self.phases):
            raise ValueError(f"every phase needs a factor >= 1 and epochs >= 1: {self.phases}")
        if self.phases and self.phases[-1]["factor"] != 1:
            raise ValueError(f"the last phase must train at full resolution (factor 1): {self.phases}")
        self.compression = compression
        self.patch_resize = patch_resize
        self.current = None
        self._base = {}
        self._fbanks = {}

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

    # ------------------------------------------------------------- the model
    def enter(self, model, phase):
        """Puts ``model`` (DATAR or AST) into the structure of ``phase``, adapting grid-dependent weights."""
        from speechbrain_datar.lobes.models.ast import AST
        from speechbrain_datar.lobes.models.datar import DATAR

        model = unwrap_module(model)
        factor = self.phases[phase]["factor"]
        if isinstance(model, DATAR):
            base = self._base.setdefault("datar", tuple(model.patch_size))
            if self.compression == "patch":
                size = (base[0], base[1] * factor)
                weight = resize_patch_weights(model.patch_proj.weight.detach(), size, self.patch_resize)
                model.set_patch_size(size, weight)
        elif isinstance(model, AST):
            base = self._base.setdefault("ast", (model.target_length, model.patch_size[1], model.tstride))
            length, width, stride = base
            if self.compression == "patch":
                new_width = width * factor
                weight = resize_patch_weights(
                    model.patch_embed.weight.detach(), (model.patch_size[0], new_width), self.patch_resize
                )
                model.set_time_grid(length, new_width, stride * factor, weight)
            else:
                model.set_time_grid(max(1, length // factor), width, stride)
        else:
            raise TypeError(f"coarse-to-fine training supports DATAR and AST, not {type(model).__name__}")
        if phase != self.current:
            logger.info("coarse-to-fine: phase %d of %d, %s x%d", phase + 1, len(self.phases), self.compression, factor)
        self.current = phase

    # -------------------------------------------------------------- features
    def features(self, wavs, compute_features, feature_options):
        """Features of the current phase before normalisation (``fshift``: a k-times frame shift)."""
        factor = self.factor
        if self.compression != "fshift" or factor == 1:
            return compute_features(wavs)
        fbank = self._fbanks.get(factor)
        if fbank is None:
            from speechbrain.lobes.features import Fbank

            options = dict(feature_options)
            options["hop_length"] = options.get("hop_length", 10) * factor
            fbank = self._fbanks[factor] = Fbank(**options)
        return fbank.to(wavs.device)(wavs)

    def compress(self, feats):
        """Pooling methods: pooled normalised features; other methods: unchanged."""
        if self.compression in ("avgpool", "maxpool") and self.factor > 1:
            return TimePooling(self.factor, self.compression[:3])(feats)
        return feats

    def frames(self, full_resolution_frames):
        """A frame count of full-resolution features, in the current phase's frames."""
        if self.compression in ("fshift", "avgpool", "maxpool") and self.factor > 1:
            return max(1, -(-int(full_resolution_frames) // self.factor))
        return int(full_resolution_frames)

    # ------------------------------------------------------------ checkpoints
    @mark_as_saver
    def save(self, path):
        """Saves the current phase."""
        with open(path, "w") as f:
            json.dump({"phase": self.current, "phases": self.phases, "compression": self.compression}, f)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores the current phase (the model was put in that phase before its weights loaded)."""
        with open(path) as f:
            self.current = json.load(f)["phase"]

    @staticmethod
    def saved_phase(checkpointer, name):
        """Phase stored in the checkpoint ``checkpointer`` would recover, or ``None``."""
        checkpoint = checkpointer.find_checkpoint() if checkpointer is not None else None
        if checkpoint is None or name not in checkpoint.paramfiles:
            return None
        with open(checkpoint.paramfiles[name]) as f:
            return json.load(f)["phase"]
