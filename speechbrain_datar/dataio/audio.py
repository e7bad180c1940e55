"""Checking and loading audio clips for the recipes, from audio files or from video files' audio streams.

Every clip that goes into a manifest is opened once during preparation. Clips
that are missing, unreadable, empty, too short, silent or without an audio
stream are reported with a reason instead of failing in the middle of an epoch.
"""

import glob
import math
import os

import numpy as np
import soxr
import torch
from speechbrain.dataio.preprocess import AudioNormalizer

from speechbrain_datar.dataio.decoding import MAX_GAP_SECONDS, open_audio, resampling_grid, unsupported_rate
from speechbrain_datar.dataio.problems import ClipProblem
from speechbrain_datar.dataio.video import VIDEO_EXTENSIONS, check_frame_size, is_video, probe_video

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".mka", ".weba")
#: What a clip may be: an audio file, or a video file whose audio stream is read.
CLIP_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS
#: A file that decodes more than this many seconds less than its header claims is a truncated download.
TRUNCATION_SECONDS = 0.5
#: Extra seconds resampled on each side of a segment, so that it equals the same span of the whole file.
RESAMPLING_MARGIN_SECONDS = 0.05


def inspect_clip(path, min_seconds=0.0, silence_threshold=1e-4, start=None, stop=None, need_video=False):
    """Opens a clip (an audio or a video file), decodes it and returns what preparation needs to know, or
    raises ``ClipProblem``.

    The sound is decoded chunk by chunk (memory does not grow with the file): its duration is what really
    decodes, not what the header claims, so a truncated download is reported (``truncated``) instead of
    failing in training.

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
        Optional segment in seconds; checked against what the file decodes.
    need_video : bool
        A video file must also have a video stream, of frames no larger than
        ``video.MAX_FRAME_PIXELS``, that lasts as long as the segment (for recipes that read frames).

    Returns
    -------
    dict
        ``sample_rate``, ``channels``, ``duration`` (seconds of the file or segment).

    Example
    -------
    >>> import tempfile, os, soundfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> soundfile.write(path, 0.5 * np.sin(np.arange(8000) / 5.0), 16000)
    >>> inspect_clip(path)
    {'sample_rate': 16000, 'channels': 1, 'duration': 0.5}
    >>> inspect_clip(path + ".missing")
    Traceback (most recent call last):
    ...
    speechbrain_datar.dataio.problems.ClipProblem: missing: ...
    """
    video_seconds = _video_seconds(path) if need_video and is_video(path) else None
    with open_audio(path) as source:
        rate, header = source.sample_rate, source.header_samples
        first, last = 0, None
        if start is not None or stop is not None:
            start = 0.0 if start is None else start
            if stop is not None and stop <= start:
                raise ClipProblem("bad_segment", f"{path}: stop {stop} is not after start {start}")
            first, last = int(round(start * rate)), None if stop is None else int(round(stop * rate))
        decoded, peak, finite = 0, 0.0, True
        for position, samples in source.chunks(first):
            if last is not None:
                samples = samples[:, : last - position]
            if not samples.size:
                break
            decoded += samples.shape[1]
            loudest = float(np.abs(samples).max())  # NaN or infinite if any sample is
            finite = finite and math.isfinite(loudest)
            peak = max(peak, loudest) if finite else peak
    end = first + decoded
    jumps = getattr(source, "discontinuities", 0)
    if jumps:
        raise ClipProblem(
            "bad_timestamps",
            f"{path}: its timestamps jump {jumps} time(s) by more than {MAX_GAP_SECONDS:g} s (damage, not silence); "
            f"{end / rate:.2f} s of sound decode",
        )
    if last is None and header and end < header - TRUNCATION_SECONDS * rate:
        raise ClipProblem(
            "truncated",
            f"{path}: its header says {header / rate:.2f} s, {end / rate:.2f} s decode (an interrupted download?)",
        )
    if last is not None and end < last - 0.05 * rate:
        reason = "truncated" if header and last <= header + 0.05 * rate else "beyond_end"
        raise ClipProblem(
            reason,
            f"{path}: segment {first / rate:.2f}-{last / rate:.2f} s, the file decodes "
            f"to {end / rate:.2f} s" + (f" of the {header / rate:.2f} s its header says" if header else ""),
        )
    if decoded == 0:
        raise ClipProblem("empty", f"{path} decoded to no samples")
    duration = decoded / rate
    if duration < min_seconds:
        raise ClipProblem("too_short", f"{path}: {duration:.3f}s < {min_seconds}s")
    if video_seconds is not None and video_seconds < end / rate - 0.5:
        raise ClipProblem(
            "too_short",
            f"{path}: its video stream ends at {video_seconds:.2f}s, before the span's end at {end / rate:.2f}s",
        )
    if not finite:
        raise ClipProblem("non_finite", f"{path} holds NaN or infinite samples")
    if silence_threshold is not None and peak < silence_threshold:
        raise ClipProblem("silent", f"{path}: peak below {silence_threshold}")
    return {"sample_rate": int(rate), "channels": int(source.channels), "duration": round(duration, 4)}


def _video_seconds(path):
    """Seconds of a video file's picture, after checking that it has one of a size that can be read."""
    info = probe_video(path)
    if info["video"] is None:
        raise ClipProblem("no_video_stream", path)
    check_frame_size(path, info["video"]["width"], info["video"]["height"])
    return info["video"]["duration"]


def clip_duration(path):
    """Seconds of a whole clip as preparation records them: its audio's (the samples that decode), or for a
    video without sound its picture's.

    Example
    -------
    >>> import tempfile, os, soundfile
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
    """The sample rate of a file's sound and how many samples really decode (``clip_duration``'s example
    shows both)."""
    with open_audio(path) as source:
        return int(source.sample_rate), int(source.decoded_samples())


def mono(samples):
    """``[channels, n]`` samples as one float32 channel (their mean)."""
    return np.ascontiguousarray(
        samples.mean(axis=0, dtype=np.float32) if samples.shape[0] > 1 else samples[0], dtype=np.float32
    )


def resample(wav, file_rate, rate):
    """A mono float32 waveform resampled with soxr (its cost and memory do not depend on the rates' ratio)."""
    return wav if file_rate == rate else soxr.resample(wav, file_rate, rate, quality="HQ")


class SoxrAudioNormalizer(AudioNormalizer):
    """SpeechBrain's ``AudioNormalizer`` (same arguments, what ``EncoderClassifier.load_audio`` calls) that
    resamples with soxr, as ``load_clip`` does, and refuses sample rates outside
    ``[decoding.MIN_SAMPLE_RATE, decoding.MAX_SAMPLE_RATE]``: SpeechBrain's resampler builds a kernel that
    grows with the rates' reduced ratio (gigabytes for a 44,101 Hz file).

    Example
    -------
    >>> normalizer = SoxrAudioNormalizer(16000)
    >>> normalizer(torch.zeros(44101, 2), 44101).shape
    torch.Size([16000])
    >>> normalizer(torch.zeros(10), 1)
    Traceback (most recent call last):
    ...
    ValueError: unsupported sample rate: 1 Hz is outside 1000-768000 Hz
    """

    def __call__(self, audio, sample_rate):
        problem = unsupported_rate(sample_rate)
        if problem:
            raise ValueError(f"unsupported sample rate: {problem}")
        if sample_rate != self.sample_rate:
            samples = np.ascontiguousarray(audio.detach().cpu().numpy(), dtype=np.float32)
            audio = torch.from_numpy(soxr.resample(samples, sample_rate, self.sample_rate, quality="HQ"))
        return self._mix(audio)


def load_clip(path, sample_rate=16000, start=None, stop=None):
    """Loads a mono waveform at ``sample_rate``, optionally a segment given in seconds.

    Every file goes through ``decoding.open_audio``, so a segment equals the same span of the whole file
    (exactly when the file has ``sample_rate``; resampled, to float round-off, because the segment is
    resampled with a margin on each side from a sample where both rates meet). Multi-channel audio is
    averaged to mono; other sample rates are resampled with soxr. A segment that reaches past the end of
    what the file decodes (a download truncated after preparation) is completed with zeros, so that a
    training crop always has the length it asked for.

    Example
    -------
    >>> import tempfile, os, soundfile
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo.wav")
    >>> soundfile.write(path, np.zeros((4410, 2), dtype="float32") + 0.1, 44100)
    >>> load_clip(path, 16000).shape, load_clip(path, 16000, 0.05, 0.25).shape, load_clip(path, 16000, 0.0, 9.0).shape
    (torch.Size([1600]), torch.Size([3200]), torch.Size([144000]))
    """
    with open_audio(path) as source:
        rate = source.sample_rate
        out_first = 0 if not start else max(0, int(round(start * sample_rate)))
        out_last = None if stop is None else max(out_first, int(round(stop * sample_rate)))
        if rate == sample_rate:
            wav = mono(source.read(out_first, out_last))
        elif out_first == 0 and out_last is None:
            wav = resample(mono(source.read()), rate, sample_rate)
        else:
            step_in, step_out = resampling_grid(rate, sample_rate)
            margin = math.ceil(RESAMPLING_MARGIN_SECONDS * sample_rate / step_out) * step_out
            lo = max(0, out_first - margin) // step_out * step_out  # where both rates have a sample
            hi = None if out_last is None else -(-(out_last + margin) // step_out) * step_out
            samples = mono(source.read(lo // step_out * step_in, None if hi is None else hi // step_out * step_in))
            wav = resample(samples, rate, sample_rate)[out_first - lo : None if out_last is None else out_last - lo]
    wav = torch.from_numpy(np.ascontiguousarray(wav))
    if out_last is not None and wav.shape[0] < out_last - out_first:
        wav = torch.nn.functional.pad(wav, (0, out_last - out_first - wav.shape[0]))
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
        if os.path.exists(base + ext):  # a device, a pipe, a folder, or a link to one
            target = f" (a link to {os.path.realpath(base + ext)})" if os.path.islink(base + ext) else ""
            raise ClipProblem("not_a_file", f"{base + ext}{target} is not a regular file")
        if os.path.islink(base + ext):
            raise ClipProblem("broken_link", f"{base + ext} is a symbolic link to nothing (or to itself)")
    others = sorted(glob.glob(glob.escape(base) + ".*"))
    if others:
        raise ClipProblem("unsupported_format", f"{others[0]} (readable: {', '.join(extensions)})")
    return None
