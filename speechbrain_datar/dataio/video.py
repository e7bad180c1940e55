"""Audio and frames straight from video files (mp4, mkv, webm, mov, avi), and EPIC-KITCHENS frame dumps.

Decoding goes through PyAV, whose wheels bundle FFmpeg (H.264, HEVC, VP9, AV1;
AAC, Opus, MP3, FLAC, PCM), so it installs from the package registry alone.
Reading a segment seeks to its start: a segment of a long video costs the same
wherever it lies.
"""

import glob
import os

import av
import numpy as np
import torch

from speechbrain_datar.dataio.problems import ClipProblem

VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv", ".webm", ".mov", ".avi")


def is_video(path):
    """Whether ``path`` names a video container (by its extension).

    Example
    -------
    >>> is_video("P01_01.MP4"), is_video("clip.wav")
    (True, False)
    """
    return os.path.splitext(path)[1].lower() in {ext.lower() for ext in VIDEO_EXTENSIONS}


def _open(path):
    try:
        return av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise ClipProblem("unreadable", f"{path}: {error}") from None


def probe_video(path):
    """What a video file holds, without decoding it.

    Returns
    -------
    dict
        ``duration`` (seconds), ``audio`` (``sample_rate``, ``channels``) or ``None``,
        ``video`` (``fps``, ``width``, ``height``, ``duration`` of the video stream) or ``None``.
    """
    with _open(path) as container:
        duration = container.duration / av.time_base if container.duration else None
        audio = video = None
        if container.streams.audio:
            stream = container.streams.audio[0]
            audio = {"sample_rate": stream.rate, "channels": stream.channels}
            if duration is None and stream.duration:
                duration = float(stream.duration * stream.time_base)
        if container.streams.video:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or None
            seconds = float(stream.duration * stream.time_base) if stream.duration else (
                stream.frames / fps if stream.frames and fps else duration)
            video = {"fps": fps, "width": stream.codec_context.width, "height": stream.codec_context.height,
                     "duration": seconds}
        return {"duration": duration, "audio": audio, "video": video}


def _seek(container, stream, seconds):
    if seconds and seconds > 0:
        container.seek(int(seconds / stream.time_base), stream=stream, backward=True)


def read_video_samples(path, start=None, stop=None):
    """The audio stream of a video file (or its segment ``[start, stop)`` seconds) at the file's own rate.

    Seeks to ``start`` and decodes up to ``stop`` only. ``load_clip`` makes it mono
    at the recipe's rate, as it does for audio files.

    Returns
    -------
    samples : torch.Tensor
        Float ``[samples, channels]``.
    rate : int
        The stream's sample rate.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_datar.dataio.synthetic import write_video
    >>> path = os.path.join(tempfile.mkdtemp(), "clip.mkv")
    >>> wav = np.sin(np.arange(16000) / 5.0).astype(np.float32) * 0.5
    >>> write_video(path, wav, 16000, np.zeros((25, 32, 32, 3), np.uint8), fps=25, audio_codec="flac")
    >>> samples, rate = read_video_samples(path, 0.25, 0.5)
    >>> samples.shape, rate
    (torch.Size([4000, 1]), 16000)
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise ClipProblem("no_audio_stream", path)
        stream = container.streams.audio[0]
        rate = stream.rate
        _seek(container, stream, start)
        first = 0 if start is None else int(round(start * rate))
        last = None if stop is None else int(round(stop * rate))
        to_float = av.AudioResampler(format="fltp")  # float planar, the file's own layout and rate
        pieces, position, done = [], 0, False
        try:
            for frame in container.decode(stream):
                for converted in to_float.resample(frame):
                    samples = converted.to_ndarray()  # channels, n
                    if converted.pts is not None:
                        position = int(round(float(converted.pts * converted.time_base) * rate))
                    lo, hi = position, position + samples.shape[1]
                    position = hi
                    if hi > first:
                        pieces.append(samples[:, max(0, first - lo): None if last is None else max(0, last - lo)])
                    done = last is not None and hi >= last
                    if done:
                        break
                if done:
                    break
        except av.error.FFmpegError as error:
            raise ClipProblem("unreadable", f"{path}: {error}") from None
    if not pieces:
        return torch.zeros(0, 1), rate
    return torch.from_numpy(np.concatenate(pieces, axis=1)).float().t(), rate


def read_video_frames(path, times):
    """The frames shown at ``times`` (seconds, increasing), as uint8 ``[len(times), 3, H, W]``.

    Seeks to the first time and decodes forward; each time gets the last frame
    whose presentation time is not after it.
    """
    times = [float(t) for t in times]
    with _open(path) as container:
        if not container.streams.video:
            raise ClipProblem("no_video_stream", path)
        stream = container.streams.video[0]
        _seek(container, stream, times[0])
        chosen, previous, index = [], None, 0
        try:
            for frame in container.decode(stream):
                shown = float(frame.pts * frame.time_base) if frame.pts is not None else None
                while index < len(times) and shown is not None and shown > times[index] + 1e-6:
                    chosen.append(previous if previous is not None else frame.to_ndarray(format="rgb24"))
                    index += 1
                if index == len(times):
                    break
                previous = frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as error:
            raise ClipProblem("unreadable", f"{path}: {error}") from None
        while index < len(times) and previous is not None:  # times at or past the last frame
            chosen.append(previous)
            index += 1
    if len(chosen) < len(times):
        raise ClipProblem("too_short", f"{path} has no frame at {times[len(chosen)]:.2f} s")
    return torch.from_numpy(np.stack(chosen)).permute(0, 3, 1, 2).contiguous()


def read_frame_dumps(folder, indices, pattern="frame_{:010d}.jpg"):
    """EPIC-KITCHENS' extracted frames (``rgb_frames/<video_id>/frame_0000000001.jpg``, 1-based) as uint8
    ``[len(indices), 3, H, W]``."""
    from PIL import Image

    frames = []
    for index in indices:
        path = os.path.join(folder, pattern.format(int(index)))
        if not os.path.isfile(path):
            raise ClipProblem("too_short", f"{path} does not exist")
        with Image.open(path) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def find_video(folder, stem):
    """``folder/stem.<video extension>`` if one exists (any letter case of the extension), else ``None``."""
    for path in sorted(glob.glob(glob.escape(os.path.join(folder, stem)) + ".*")):
        if is_video(path):
            return path
    return None
