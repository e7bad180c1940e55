"""Log-mel features whose time resolution can be coarsened, for coarse-to-fine training.

``Fbank`` is SpeechBrain's ``Fbank`` (same arguments, same output at full
resolution) that also knows the options it was built with, so that the recipe,
the coarse phases and the exported model all use one set of fbank settings.
"""

import speechbrain.lobes.features
import torch
import torch.nn.functional as F
from speechbrain.processing.features import STFT, Filterbank, spectral_magnitude
from torch import nn

from speechbrain_datar.errors import DataError

TIME_COMPRESSIONS = ("fshift", "avgpool", "maxpool")


class TimePooling(nn.Module):
    """Average or max pooling along time of ``[batch, time, n_mels]`` features (kernel = stride = factor).

    Example
    -------
    >>> import torch
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


class Fbank(speechbrain.lobes.features.Fbank):
    """SpeechBrain's ``Fbank`` with a settable time resolution.

    Arguments
    ---------
    **options
        The arguments of ``speechbrain.lobes.features.Fbank`` (``sample_rate``,
        ``n_mels``, ``n_fft``, ``win_length``, ``hop_length`` in ms, ...), kept in
        ``options``.

    Example
    -------
    >>> import torch
    >>> fbank = Fbank(sample_rate=16000, n_mels=40, hop_length=10)
    >>> wavs = torch.randn(2, 16000)
    >>> fbank(wavs).shape
    torch.Size([2, 101, 40])
    >>> fbank.set_time_resolution(4, "fshift"); fbank(wavs).shape, fbank.frames(101)
    (torch.Size([2, 26, 40]), 26)
    >>> fbank.set_time_resolution(4, "avgpool"); fbank(wavs).shape
    torch.Size([2, 26, 40])
    """

    #: The class an exported model computes these features with (the same output at full resolution).
    exported_class = "speechbrain.lobes.features.Fbank"

    def __init__(self, **options):
        super().__init__(**options)
        self.options = dict(options)
        self.factor, self.compression = 1, None
        self.compress = nn.Identity()

    @property
    def hop_length(self):
        """Frame shift in ms at full resolution."""
        return self.options.get("hop_length", 10)

    def set_time_resolution(self, factor=1, compression=None):
        """Makes features ``factor`` times coarser in time; ``factor`` 1 (or no compression) is full resolution.

        Arguments
        ---------
        factor : int
            Compression factor along time.
        compression : str or None
            ``fshift`` (the frame shift times ``factor``), ``avgpool`` or ``maxpool``
            (pooling along time, kernel = stride = ``factor``).
        """
        if compression is not None and compression not in TIME_COMPRESSIONS:
            raise DataError(f"time compression must be one of {TIME_COMPRESSIONS}, got {compression!r}")
        factor = int(factor) if compression is not None else 1
        self.factor, self.compression = factor, compression if factor > 1 else None
        if self.compression == "fshift":
            options = dict(self.options, hop_length=self.hop_length * factor)
            device = self.compute_deltas.kernel.device  # where this module lives (CPU or a GPU)
            self.compress = speechbrain.lobes.features.Fbank(**options).to(device)
        elif self.compression in ("avgpool", "maxpool"):
            self.compress = TimePooling(factor, self.compression[:3])
        else:
            self.compress = nn.Identity()

    def frames(self, full_resolution_frames):
        """A number of full-resolution frames, in frames of the current resolution."""
        return max(1, -(-int(full_resolution_frames) // self.factor))

    def forward(self, wavs):
        """Features ``[batch, frames, n_mels]`` at the current time resolution."""
        if self.compression == "fshift":
            return self.compress(wavs)
        return self.compress(super().forward(wavs))


class MagnitudeMelLog1p(nn.Module):
    """The features SpeechBrain's ESC-50 recipe gives CNN14: ``log1p`` of a mel filterbank of STFT magnitudes.

    STFT (``n_fft`` 1024, 23.2 ms windows, 11.6 ms hop: 1024 and 512 samples at 44.1 kHz), magnitudes
    (``spec_mag_power`` 0.5 of the power), ``Filterbank`` without its log, then ``log1p``.

    Example
    -------
    >>> features = MagnitudeMelLog1p(sample_rate=16000)
    >>> features(torch.randn(2, 16000)).shape, frames_in_clip(features, 1.0)
    (torch.Size([2, 87, 80]), 87)
    """

    exported_class = "speechbrain_datar.lobes.features.MagnitudeMelLog1p"

    def __init__(
        self, sample_rate=16000, n_mels=80, n_fft=1024, win_length=23.2199, hop_length=11.6099, spec_mag_power=0.5
    ):
        super().__init__()
        self.options = dict(
            sample_rate=sample_rate,
            n_mels=n_mels,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            spec_mag_power=spec_mag_power,
        )
        self.hop_length, self.spec_mag_power = hop_length, spec_mag_power
        self.stft = STFT(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length)
        self.filterbank = Filterbank(n_mels=n_mels, n_fft=n_fft, sample_rate=sample_rate, log_mel=False)

    @property
    def compute_STFT(self):  # noqa: N802 (the name SpeechBrain's Fbank gives it)
        """The STFT, under the name SpeechBrain's ``Fbank`` gives it: streamed reads and timelines take its hop and
        its centring from there."""
        return self.stft

    def set_time_resolution(self, factor=1, compression=None):
        """Only full resolution: coarse-to-fine schedules are built on ``Fbank``."""
        if factor != 1:
            raise ValueError("MagnitudeMelLog1p has no coarse time resolutions; use Fbank for coarse-to-fine")

    def frames(self, full_resolution_frames):
        """Frames at the current resolution (always the full one)."""
        return int(full_resolution_frames)

    def forward(self, wavs):
        """Features ``[batch, frames, n_mels]``."""
        magnitudes = spectral_magnitude(self.stft(wavs), power=self.spec_mag_power)
        return torch.log1p(self.filterbank(magnitudes))


def frames_in_clip(features, seconds):
    """Feature frames ``features`` (an ``Fbank``, centred STFT) give for ``seconds`` of audio at full resolution.

    Example
    -------
    >>> frames_in_clip(Fbank(sample_rate=16000, hop_length=10), 10.0)
    1001
    """
    sample_rate = features.options.get("sample_rate", 16000)
    hop_samples = int(round(sample_rate * features.hop_length / 1000.0))
    return int(round(seconds * sample_rate)) // hop_samples + 1
