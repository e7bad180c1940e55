"""Checking and loading audio clips for the recipes, from audio files or from video files' audio streams.

Every clip that goes into a manifest is opened once during preparation. Clips
that are missing, unreadable, empty, too short, silent or without an audio
stream are reported with a reason instead of failing in the middle of an epoch.
"""

import glob
import os

import numpy as np
import soundfile
import torch  # noqa: F401 (used by the doctests)
import torchaudio
from speechbrain.dataio.dataio import read_audio

from speechbrain_datar.dataio.problems import ClipProblem
from speechbrain_datar.dataio.video import VIDEO_EXTENSIONS, is_video, probe_video, read_video_samples

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
#: What a clip may be: an audio file, or a video file whose audio stream is read.
CLIP_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS


def inspect_clip(path, min_seconds=0.0, silence_threshold=1e-4, start=None, stop=None, need_video=False):
    """Opens a clip (an audio or a video file) and returns what preparation needs to know, or raises ``ClipProblem``.

    Arguments
    ---------
    path : str
        Audio file, or video file whose audio stream is read.
    min_seconds : float
        Shortest accepted duration (of the segment, if one is given).
    silence_threshold : float
        A clip whose peak amplitude is below this is rejected as silent
        (``None`` disables the check).
    start, stop : float or None
        Optional segment in seconds; checked against the file's duration.
    need_video : bool
        A video file must also have a video stream that lasts as long as the
        segment (for recipes that read frames).

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
    speechbrain_datar.dataio.problems.ClipProblem: missing: ...
    """
    if not os.path.isfile(path):
        raise ClipProblem("missing", path)
    if os.path.getsize(path) == 0:
        raise ClipProblem("empty", f"{path} has zero bytes")
    rate, channels, file_seconds, video_seconds = _audio_facts(path, need_video)
    first, last = 0, int(round(file_seconds * rate))
    if start is not None or stop is not None:
        start = 0.0 if start is None else start
        stop = file_seconds if stop is None else stop
        if stop <= start:
            raise ClipProblem("bad_segment", f"{path}: stop {stop} is not after start {start}")
        if start >= file_seconds or stop > file_seconds + 0.05:
            raise ClipProblem(
                "beyond_end", f"{path}: segment {start:.2f}-{stop:.2f}s, file has {file_seconds:.2f}s"
            )
        first, last = int(round(start * rate)), min(last, int(round(stop * rate)))
    duration = (last - first) / rate
    if duration < min_seconds:
        raise ClipProblem("too_short", f"{path}: {duration:.3f}s < {min_seconds}s")
    if video_seconds is not None and video_seconds < last / rate - 0.5:
        raise ClipProblem("too_short", f"{path}: its video stream ends at {video_seconds:.2f}s, before the span's "
                                       f"end at {last / rate:.2f}s")
    data = _read_samples(path, rate, first, last)
    if data.size == 0:
        raise ClipProblem("empty", f"{path} decoded to no samples")
    if not np.all(np.isfinite(data)):
        raise ClipProblem("non_finite", f"{path} holds NaN or infinite samples")
    if silence_threshold is not None and float(np.abs(data).max()) < silence_threshold:
        raise ClipProblem("silent", f"{path}: peak below {silence_threshold}")
    return {"sample_rate": int(rate), "channels": int(channels), "duration": round(duration, 4)}


def clip_duration(path):
    """Seconds of a whole clip as preparation records them: its audio's (in whole samples), or for a video
    without sound its picture's.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> soundfile.write(path, np.zeros(12345), 16000)
    >>> clip_duration(path), audio_samples(path)
    (0.7716, (16000, 12345))
    """
    if is_video(path):
        info = probe_video(path)
        if info["audio"] is None and info["video"] is not None:
            return round(info["video"]["duration"] or info["duration"], 4)
    rate, samples = audio_samples(path)
    return round(samples / rate, 4)


def audio_samples(path):
    """The sample rate of a file's sound and how many samples it holds (the decoder may give a few fewer);
    ``clip_duration``'s example shows both."""
    rate, _, seconds, _ = _audio_facts(path)
    return int(rate), int(round(seconds * rate))


def _audio_facts(path, need_video=False):
    """Sample rate, channels and seconds of a file's audio, and the seconds of its video stream (with
    ``need_video``; else ``None``)."""
    if is_video(path):
        info = probe_video(path)
        if info["audio"] is None:
            raise ClipProblem("no_audio_stream", path)
        if need_video and info["video"] is None:
            raise ClipProblem("no_video_stream", path)
        if not info["duration"]:
            raise ClipProblem("empty", f"{path} has no duration")
        video_seconds = info["video"]["duration"] if need_video else None
        return info["audio"]["sample_rate"], info["audio"]["channels"], info["duration"], video_seconds
    try:
        info = soundfile.info(path)
    except Exception as error:  # soundfile raises several types for corrupt files
        raise ClipProblem("unreadable", f"{path}: {error}") from None
    if info.frames <= 0:
        raise ClipProblem("empty", f"{path} has no audio frames")
    return info.samplerate, info.channels, info.frames / info.samplerate, None


def _read_samples(path, rate, first, last):
    """Samples ``[first, last)`` of a file's audio (at its own rate) as a numpy array."""
    if is_video(path):
        return read_video_samples(path, first / rate, last / rate)[0].numpy()
    try:
        return soundfile.read(path, start=first, stop=last, dtype="float32", always_2d=True)[0]
    except Exception as error:
        raise ClipProblem("unreadable", f"{path}: {error}") from None


def load_clip(path, sample_rate=16000, start=None, stop=None):
    """Loads a mono waveform at ``sample_rate``, optionally a segment given in seconds.

    Audio files are read with SpeechBrain's ``read_audio``; video files' audio
    streams with ``read_video_samples`` (seeking to ``start``). Multi-channel audio
    is averaged to mono; other sample rates are resampled.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo.wav")
    >>> soundfile.write(path, np.zeros((4410, 2), dtype="float32") + 0.1, 44100)
    >>> load_clip(path, 16000).shape
    torch.Size([1600])
    """
    if is_video(path):
        wav, file_rate = read_video_samples(path, start, stop)
    else:
        file_rate = soundfile.info(path).samplerate
        first = 0 if start is None else int(round(start * file_rate))
        last = first if stop is None else int(round(stop * file_rate))  # read_audio: stop == start reads to the end
        wav = read_audio({"file": path, "start": first, "stop": last}).float()
    if wav.dim() == 2:
        wav = wav.mean(dim=1)
    if file_rate != sample_rate:
        wav = torchaudio.functional.resample(wav, file_rate, sample_rate)
    return wav


def find_audio(folder, stem, extensions=CLIP_EXTENSIONS):
    """Path of ``folder/stem.<ext>`` for the first extension that exists, else ``None``.

    Raises ``ClipProblem``: ``outside_data_folder`` when ``stem`` (built from an
    annotation file) leads outside ``folder``, as ``../..`` or an absolute path
    does; ``unsupported_format`` when only files of other formats have that name.

    Example
    -------
    >>> find_audio("/data/audio", "../../etc/passwd")
    Traceback (most recent call last):
    ...
    speechbrain_datar.dataio.problems.ClipProblem: outside_data_folder: '../../etc/passwd' leads outside /data/audio
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
