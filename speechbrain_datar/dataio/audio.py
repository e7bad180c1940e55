"""Checking and loading audio clips for the recipes.

Every clip that goes into a manifest is opened once during preparation. Clips
that are missing, unreadable, empty, too short or silent are reported with a
reason instead of failing in the middle of an epoch.
"""

import glob
import os

import numpy as np
import soundfile
import torch  # noqa: F401 (used by the doctests)
import torchaudio
from speechbrain.dataio.dataio import read_audio

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")


class ClipProblem(Exception):
    """Raised when a clip cannot be used; ``reason`` is a short key for the skip report."""

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def inspect_clip(path, min_seconds=0.0, silence_threshold=1e-4, start=None, stop=None):
    """Opens a clip and returns what preparation needs to know, or raises ``ClipProblem``.

    Arguments
    ---------
    path : str
        Audio file.
    min_seconds : float
        Shortest accepted duration (of the segment, if one is given).
    silence_threshold : float
        A clip whose peak amplitude is below this is rejected as silent
        (``None`` disables the check).
    start, stop : float or None
        Optional segment in seconds; checked against the file's duration.

    Returns
    -------
    dict
        ``sample_rate``, ``channels``, ``duration`` (seconds of the file or segment).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> soundfile.write(path, 0.5 * np.sin(np.arange(8000) / 5.0), 16000)
    >>> inspect_clip(path)
    {'sample_rate': 16000, 'channels': 1, 'duration': 0.5}
    >>> inspect_clip(path + ".missing")
    Traceback (most recent call last):
    ...
    speechbrain_datar.dataio.audio.ClipProblem: missing: ...
    """
    if not os.path.isfile(path):
        raise ClipProblem("missing", path)
    if os.path.getsize(path) == 0:
        raise ClipProblem("empty", f"{path} has zero bytes")
    try:
        info = soundfile.info(path)
    except Exception as error:  # soundfile raises several types for corrupt files
        raise ClipProblem("unreadable", f"{path}: {error}") from None
    if info.frames <= 0:
        raise ClipProblem("empty", f"{path} has no audio frames")
    file_seconds = info.frames / info.samplerate
    first, last = 0, info.frames
    if start is not None or stop is not None:
        start = 0.0 if start is None else start
        stop = file_seconds if stop is None else stop
        if stop <= start:
            raise ClipProblem("bad_segment", f"{path}: stop {stop} is not after start {start}")
        if start >= file_seconds or stop > file_seconds + 0.05:
            raise ClipProblem(
                "beyond_end", f"{path}: segment {start:.2f}-{stop:.2f}s, file has {file_seconds:.2f}s"
            )
        first, last = int(round(start * info.samplerate)), min(info.frames, int(round(stop * info.samplerate)))
    duration = (last - first) / info.samplerate
    if duration < min_seconds:
        raise ClipProblem("too_short", f"{path}: {duration:.3f}s < {min_seconds}s")
    try:
        data, _ = soundfile.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as error:
        raise ClipProblem("unreadable", f"{path}: {error}") from None
    if data.size == 0:
        raise ClipProblem("empty", f"{path} decoded to no samples")
    if not np.all(np.isfinite(data)):
        raise ClipProblem("non_finite", f"{path} holds NaN or infinite samples")
    if silence_threshold is not None and float(np.abs(data).max()) < silence_threshold:
        raise ClipProblem("silent", f"{path}: peak below {silence_threshold}")
    return {"sample_rate": int(info.samplerate), "channels": int(info.channels), "duration": round(duration, 4)}


def load_clip(path, sample_rate=16000, start=None, stop=None):
    """Loads a mono waveform at ``sample_rate``, optionally a segment given in seconds.

    Multi-channel audio is averaged to mono; other sample rates are resampled.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo.wav")
    >>> soundfile.write(path, np.zeros((4410, 2), dtype="float32") + 0.1, 44100)
    >>> load_clip(path, 16000).shape
    torch.Size([1600])
    """
    file_rate = soundfile.info(path).samplerate
    first = 0 if start is None else int(round(start * file_rate))
    last = first if stop is None else int(round(stop * file_rate))  # read_audio: stop == start reads to the end
    wav = read_audio({"file": path, "start": first, "stop": last}).float()
    if wav.dim() == 2:
        wav = wav.mean(dim=1)
    if file_rate != sample_rate:
        wav = torchaudio.functional.resample(wav, file_rate, sample_rate)
    return wav


def find_audio(folder, stem, extensions=AUDIO_EXTENSIONS):
    """Path of ``folder/stem.<ext>`` for the first extension that exists, else ``None``.

    Raises ``ClipProblem``: ``outside_data_folder`` when ``stem`` (built from an
    annotation file) leads outside ``folder``, as ``../..`` or an absolute path
    does; ``unsupported_format`` when only files of other formats have that name.

    Example
    -------
    >>> find_audio("/data/audio", "../../etc/passwd")
    Traceback (most recent call last):
    ...
    speechbrain_datar.dataio.audio.ClipProblem: outside_data_folder: '../../etc/passwd' leads outside /data/audio
    """
    root = os.path.abspath(folder)
    base = os.path.abspath(os.path.join(root, stem))
    if os.path.commonpath([root, base]) != root or base == root:
        raise ClipProblem("outside_data_folder", f"{stem!r} leads outside {folder}")
    for ext in extensions:
        if os.path.isfile(base + ext):
            return base + ext
    others = sorted(glob.glob(glob.escape(base) + ".*"))
    if others:
        raise ClipProblem("unsupported_format", f"{others[0]} (readable: {', '.join(extensions)})")
    return None
