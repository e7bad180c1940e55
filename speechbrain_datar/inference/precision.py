"""Numeric precision of an exported model's encoder at inference: ``"fp32"``, ``"bf16"`` or ``"int8"``.

``fp32``
    The trained weights as they are.
``bf16``
    The encoder runs under ``torch.autocast`` with bfloat16: matrix products and convolutions in bf16,
    normalisations, softmax and the deformable sampling positions in float32 (autocast's lists; the
    sampling and the relative-position bias cast their inputs to float32 themselves). Worth it where the
    hardware multiplies bf16 natively (CUDA GPUs from Ampere on; CPUs with ``avx512_bf16`` or AMX);
    elsewhere it is emulated and slower, so it falls back to fp32 with a logged message.
``int8``
    Dynamic quantization of the encoder's linear layers (``torch.ao.quantization.quantize_dynamic``: int8
    weights, activations quantized per call), on the CPU only; convolutions, attention, the deformable
    sampling and the head stay float32. On a GPU it falls back to fp32 with a logged message.

``auto``
    The default of exported models: bf16 where the hardware multiplies bf16 natively (a CUDA GPU that supports
    it; a CPU whose flags list ``avx512_bf16`` or ``amx_bf16``, read from ``/proc/cpuinfo``), fp32 otherwise.
    int8 is never chosen by itself: it changes labels (4 of 400 ESC-10 clips), so it is asked for by name.
    The choice is logged once per device kind.

The classification head stays float32 in every precision; the encoder's output is float32.
"""

import copy
import logging
import warnings

import torch
from torch import nn

from speechbrain_datar.errors import DataError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
AUTO = "auto"
#: What can be asked for: a precision, or ``auto`` (the device's best one among fp32 and bf16).
PRECISION_CHOICES = (AUTO, *PRECISIONS)
#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_auto_logged = set()


def cpu_flags():
    """The CPU's instruction-set flags as the kernel lists them (``/proc/cpuinfo``; empty where it cannot be read).

    Example
    -------
    >>> isinstance(cpu_flags(), frozenset)
    True
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def auto_precision(device):
    """What ``auto`` runs in on ``device``: ``"bf16"`` where it multiplies bfloat16 natively, else ``"fp32"``
    (logged once per device kind).

    Example
    -------
    >>> auto_precision(torch.device("cpu")) in ("bf16", "fp32")
    True
    """
    device = torch.device(device)
    if device.type == "cuda":
        native = bool(torch.cuda.is_bf16_supported())
        why = "this GPU multiplies bfloat16" if native else "this GPU has no bfloat16"
    else:
        found = sorted(set(NATIVE_BF16_FLAGS) & cpu_flags())
        native = device.type == "cpu" and bool(found)
        why = (
            f"this CPU lists {', '.join(found)}" if found else f"this CPU lists none of {', '.join(NATIVE_BF16_FLAGS)}"
        )
    chosen = "bf16" if native else "fp32"
    if (device.type, chosen) not in _auto_logged:
        _auto_logged.add((device.type, chosen))
        logger.info("precision auto: %s on %s (%s)", chosen, device.type, why)
    return chosen


def check_precision(precision):
    """``precision`` if it is one of ``PRECISION_CHOICES``, else a one-line error.

    Example
    -------
    >>> check_precision("bf16")
    'bf16'
    >>> check_precision("fp16")
    Traceback (most recent call last):
    ...
    speechbrain_datar.errors.DataError: precision must be one of ('auto', 'fp32', 'bf16', 'int8'), got 'fp16'
    """
    if precision not in PRECISION_CHOICES:
        raise DataError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    return precision


def bf16_supported(device):
    """Whether ``device`` multiplies bfloat16 natively (a CPU without it would emulate bf16, slower than fp32).

    Example
    -------
    >>> isinstance(bf16_supported(torch.device("cpu")), bool)
    True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        flags = cpu_flags()
        if flags:  # what the CPU reports (oneDNN's own check also says yes where it would emulate bf16)
            return bool(set(NATIVE_BF16_FLAGS) & flags)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def int8_supported(device):
    """Whether dynamic int8 quantization runs on ``device``: the CPU, with a quantized engine (fbgemm, x86).

    Example
    -------
    >>> int8_supported(torch.device("cuda"))
    False
    """
    device = torch.device(device)
    return device.type == "cpu" and any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


def effective_precision(precision, device):
    """The precision a model asked to run in ``precision`` runs in on ``device``: the same, or ``"fp32"`` (with
    a logged warning that says why) where the device cannot.

    Example
    -------
    >>> effective_precision("int8", torch.device("cuda"))
    'fp32'
    """
    check_precision(precision)
    if precision == AUTO:
        return auto_precision(device)
    if precision == "bf16" and not bf16_supported(device):
        logger.warning(
            "precision bf16 asked for, but %s has no native bfloat16 arithmetic (a CPU needs avx512_bf16 or AMX); "
            "running in fp32",
            torch.device(device).type,
        )
        return "fp32"
    if precision == "int8" and not int8_supported(device):
        logger.warning(
            "precision int8 asked for, but dynamic int8 quantization runs on the CPU only, not on %s; running in fp32",
            torch.device(device).type,
        )
        return "fp32"
    return precision


def quantize_linear_layers(module):
    """A copy of ``module`` whose ``nn.Linear`` layers are dynamically quantized to int8 (the original is kept).

    The copy shares every other parameter and buffer with ``module`` (only the int8 weights are new), so that
    running in int8 costs no more memory than the int8 weights themselves.

    Example
    -------
    >>> layer = nn.Sequential(nn.Linear(8, 4)).eval()
    >>> type(quantize_linear_layers(layer)[0]).__name__, type(layer[0]).__name__
    ('Linear', 'Linear')
    >>> quantize_linear_layers(layer)[0].weight().dtype
    torch.qint8
    >>> layer[0].weight.dtype  # the original is unchanged
    torch.float32
    """
    with warnings.catch_warnings():
        # torch.ao.quantization warns of its move to torchao; its dynamic quantization is what torch ships.
        warnings.simplefilter("ignore", DeprecationWarning)
        shared = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
        structure = copy.deepcopy(module, memo=shared)  # new modules, the same tensors
        return torch.ao.quantization.quantize_dynamic(structure, {nn.Linear}, dtype=torch.qint8, inplace=True)


class PrecisionRunner:
    """Runs an encoder in a chosen precision: ``runner(feats, lengths) -> float32 embeddings``.

    The int8 copy is made at the first call (after the weights are loaded) and made again when the encoder's
    weights are loaded anew; it is not a submodule, so the encoder's ``state_dict`` never changes.

    Arguments
    ---------
    encoder : torch.nn.Module
        An encoder in float32.
    precision : str
        One of ``PRECISION_CHOICES`` (``auto``: the device's, ``auto_precision``).

    Example
    -------
    >>> from speechbrain_datar.lobes.models.datar import DATAR
    >>> encoder = DATAR("micro", n_mels=32).eval()
    >>> feats = torch.randn(1, 64, 32)
    >>> runner = PrecisionRunner(encoder, "int8")
    >>> out = runner(feats, None)
    >>> out.dtype, runner.running
    (torch.float32, 'int8')
    >>> bool((out - encoder(feats)).abs().max() < 0.1)
    True
    """

    def __init__(self, encoder, precision="auto"):
        self.encoder = encoder
        self.precision = check_precision(precision)
        self.running = None  # the precision the last call ran in
        self._quantized = None
        self._warned_device = None  # the device the precision was last resolved for (a fallback is logged once)
        self._resolved_precision = "fp32"
        encoder.register_load_state_dict_post_hook(self._forget_quantized)

    def _forget_quantized(self, module, incompatible_keys):
        self._quantized = None

    def set_precision(self, precision):
        """Changes the precision of the following calls."""
        self.precision = check_precision(precision)
        self._warned_device = None

    def _resolved(self, device):
        if self.precision == "fp32" or self.encoder.training:
            return "fp32"
        if self._warned_device != device:  # decide (and log a fallback) once per device
            self._resolved_precision = effective_precision(self.precision, device)
            self._warned_device = device
        return self._resolved_precision

    def __call__(self, feats, lengths=None):
        precision = self._resolved(feats.device)
        self.running = precision
        if precision == "int8":
            if self._quantized is None:
                self._quantized = quantize_linear_layers(self.encoder).eval()
            return self._quantized(feats, lengths)
        if precision == "bf16":
            with torch.autocast(device_type=feats.device.type, dtype=torch.bfloat16):
                return self.encoder(feats, lengths).float()
        return self.encoder(feats, lengths)
