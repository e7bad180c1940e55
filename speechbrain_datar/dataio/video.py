"""Audio and frames straight from video files (mp4, mkv, webm, mov, avi), and EPIC-KITCHENS frame dumps.

Decoding goes through PyAV, whose wheels bundle FFmpeg (H.264, HEVC, VP9, AV1;
AAC, Opus, MP3, FLAC, PCM), so it installs from the package registry alone.
Reading a segment seeks: a segment of a long video costs the same wherever it lies.
The sound is read on ``decoding``'s timeline; frames are placed on the same one
(presentation times from the file's start time). Frames are scaled as they are
decoded, and pictures larger than ``MAX_FRAME_PIXELS`` are refused before any is
decoded (a small file can declare an enormous picture).
"""

import os

import av
import numpy as np
import torch

from speechbrain_datar.dataio.decoding import ContainerSource, open_container
from speechbrain_datar.dataio.problems import ClipProblem

VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv", ".webm", ".mov", ".avi")
#: Largest picture read (pixels): 4096 x 4096, above 4K (3840 x 2160 and 4096 x 2160).
MAX_FRAME_PIXELS = 4096 * 4096


def is_video(path):
    """Whether ``path`` names a video container (by its extension).

    Example
    -------
    >>> is_video("P01_01.MP4"), is_video("clip.wav")
    (True, False)
    """
    return os.path.splitext(path)[1].lower() in {ext.lower() for ext in VIDEO_EXTENSIONS}


def check_frame_size(path, width, height):
    """Refuses a picture of more than ``MAX_FRAME_PIXELS`` as ``frame_too_large`` (decoding a few such frames
    takes gigabytes).

    Example
    -------
    >>> check_frame_size("bomb.mp4", 8176, 8176)
    Traceback (most recent call last):
    ...
    speechbrain_datar.dataio.problems.ClipProblem: frame_too_large: bomb.mp4: 8176x8176 frames (more than 4096x4096 pixels)
    """
    if not width or not height or width * height > MAX_FRAME_PIXELS:
        raise ClipProblem("frame_too_large", f"{path}: {width}x{height} frames (more than 4096x4096 pixels)")


def probe_video(path):
    """What a video file holds, without decoding it.

    Returns
    -------
    dict
        ``duration`` (seconds), ``audio`` (``sample_rate``, ``channels``) or ``None``,
        ``video`` (``fps``, ``width``, ``height``, ``duration`` of the video stream) or ``None``.
    """
    with open_container(path) as container:
        try:
            duration = container.duration / av.time_base if container.duration else None
            audio = video = None
            if container.streams.audio:
                stream = container.streams.audio[0]
                audio = {"sample_rate": stream.rate, "channels": stream.channels}
                if duration is None and stream.duration:
                    duration = float(stream.duration * stream.time_base)
            if container.streams.video and container.streams.video[0].codec_context is not None:
                stream = container.streams.video[0]
                fps = float(stream.average_rate or stream.guessed_rate or 0) or None
                seconds = (
                    float(stream.duration * stream.time_base)
                    if stream.duration
                    else (stream.frames / fps if stream.frames and fps else duration)
                )
                video = {
                    "fps": fps,
                    "width": stream.codec_context.width,
                    "height": stream.codec_context.height,
                    "duration": seconds,
                }
        except av.error.FFmpegError as error:
            raise ClipProblem("unreadable", f"{path}: {error}") from None
        return {"duration": duration, "audio": audio, "video": video}


def read_video_samples(path, start=None, stop=None):
    """The audio stream of a video file (or its segment ``[start, stop)`` seconds) at the file's own rate,
    on ``decoding``'s timeline.

    ``load_clip`` makes it mono at the recipe's rate, as it does for audio files.

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
    with ContainerSource(path) as source:
        rate = source.sample_rate
        first = 0 if start is None else int(round(start * rate))
        samples = source.read(first, None if stop is None else int(round(stop * rate)))
    return torch.from_numpy(samples).t(), rate


def read_video_frames(path, times, short_side=None):
    """The frames shown at ``times`` (seconds from the file's start time, increasing), as uint8
    ``[len(times), 3, H, W]``.

    Seeks to the first time and decodes forward; each time gets the last frame whose presentation
    time is not after it. With ``short_side``, frames larger than that are scaled down as they are
    decoded (aspect ratio kept), so that no full-size picture is ever held.
    """
    times = [float(t) for t in times]
    with open_container(path) as container:
        if not container.streams.video or container.streams.video[0].codec_context is None:
            raise ClipProblem("no_video_stream", path)
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        check_frame_size(path, width, height)
        scale = min(1.0, short_side / min(width, height)) if short_side else 1.0
        size = dict(width=max(1, round(width * scale)), height=max(1, round(height * scale)), format="rgb24")
        origin = container.start_time / av.time_base if container.start_time is not None else 0.0
        chosen, previous, index = [], None, 0
        try:
            if times[0] > 0:
                container.seek(int((times[0] + origin) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                shown = float(frame.pts * frame.time_base) - origin if frame.pts is not None else None
                while index < len(times) and shown is not None and shown > times[index] + 1e-6:
                    chosen.append((previous if previous is not None else frame).to_ndarray(**size))
                    index += 1
                if index == len(times):
                    break
                previous = frame
            while index < len(times) and previous is not None:  # times at or past the last frame
                chosen.append(previous.to_ndarray(**size))
                index += 1
        except av.error.FFmpegError as error:
            raise ClipProblem("unreadable", f"{path}: {error}") from None
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
