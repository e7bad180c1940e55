"""Temporal crops of a clip: where they start, their waveforms and their frames (MBT's evaluation protocol).

A clip longer than the model's span is covered by ``n_crops`` crops of that span, spread evenly from its
start to its end; each crop is its audio and its frames. The recipes' data pipelines and the exported
audio-visual model both cut crops here (``inference.temporal_crops`` embeds them).
"""

import math

import torch

from speechbrain_datar.dataio.frames import DEFAULT_FPS, frame_times
from speechbrain_datar.dataio.video import read_frame_dumps, read_video_frames


def crop_starts(duration, span, n_crops):
    """Start times (seconds) of ``n_crops`` crops of ``span`` seconds over a clip of ``duration`` seconds.

    Evenly spaced from the start to the end (one crop: the centre one); a clip no
    longer than the span (or ``span`` None: the whole clip) gives ``n_crops`` zeros.

    Example
    -------
    >>> crop_starts(10.0, 8.0, 4)
    [0.0, 0.6667, 1.3333, 2.0]
    >>> crop_starts(10.0, 8.0, 1), crop_starts(5.0, 8.0, 2)
    ([1.0], [0.0, 0.0])
    """
    n_crops = int(n_crops)
    if n_crops < 1:
        raise ValueError(f"n_crops must be positive, got {n_crops}")
    room = 0.0 if span is None else max(0.0, float(duration) - float(span))
    if n_crops == 1:
        return [round(room / 2, 4)]
    return [round(room * i / (n_crops - 1), 4) for i in range(n_crops)]


def crop_waveforms(wavs, lengths, starts, span):
    """Cuts ``span`` samples from each start of each waveform.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[batch, samples]``.
    lengths : torch.Tensor or None
        Relative lengths.
    starts : torch.Tensor
        ``[batch, n_crops]`` start samples.
    span : int
        Samples per crop.

    Returns
    -------
    crops : torch.Tensor
        ``[batch * n_crops, min(span, samples)]``, zero past each clip's end.
    lengths : torch.Tensor
        Relative lengths of the crops.

    Example
    -------
    >>> crops, lens = crop_waveforms(torch.arange(10.0)[None], torch.ones(1), torch.tensor([[0, 6]]), 5)
    >>> crops.tolist(), lens.tolist()
    ([[0.0, 1.0, 2.0, 3.0, 4.0], [6.0, 7.0, 8.0, 9.0, 0.0]], [1.0, 0.800000011920929])
    """
    batch, samples = wavs.shape
    width = min(int(span), samples)
    valid = (
        torch.full((batch,), samples, device=wavs.device)
        if lengths is None
        else torch.round(lengths.to(wavs.device) * samples).long()
    )
    crops = wavs.new_zeros(batch, starts.shape[1], width)
    kept = torch.zeros(batch, starts.shape[1], dtype=torch.long)
    for b in range(batch):
        for c, start in enumerate(starts[b].tolist()):
            piece = wavs[b, start : min(start + width, int(valid[b]))]
            crops[b, c, : piece.shape[0]] = piece
            kept[b, c] = max(1, piece.shape[0])
    return crops.flatten(0, 1), (kept.flatten().float() / width).to(wavs.device)


def read_frames(path, times, frames_folder=None, fps=None, frame_offset=0.0, short_side=None):
    """uint8 ``[len(times), 3, H, W]``: the frames shown at ``times`` (seconds, any order), from the video
    file or from extracted frames (``frames_folder/frame_%010d.jpg``, the frame at ``t`` seconds numbered
    ``t * fps + frame_offset``); video frames larger than ``short_side`` are scaled down as they are decoded."""
    if frames_folder:
        # the frame shown at t, as from the video: the last one that started by then
        return read_frame_dumps(frames_folder, [math.floor(t * fps + frame_offset + 1e-6) for t in times])
    order = sorted(range(len(times)), key=times.__getitem__)
    frames = read_video_frames(path, [times[i] for i in order], short_side)
    out = torch.empty_like(frames)
    out[torch.tensor(order)] = frames
    return out


def decoded_short_side(transform):
    """The short side frames are decoded at: twice the model's frame size, so that the smallest random crops
    (35% of the area) still come from more pixels than they are resized to.

    Example
    -------
    >>> from speechbrain_datar.dataio.frames import FrameTransform
    >>> decoded_short_side(FrameTransform(224))
    448
    """
    return 2 * transform.size


def crop_frame_times(first, duration, starts, span_seconds, n_frames, sampling="uniform", stride=1, fps=None):
    """Times (seconds into the file) of the frames of each evaluation crop, crop after crop.

    Example
    -------
    >>> crop_frame_times(0.0, 4.0, [0.0, 2.0], 2.0, 2)
    [0.5, 1.5, 2.5, 3.5]
    """
    rate = fps or DEFAULT_FPS
    span_seconds = duration if span_seconds is None else span_seconds
    times = []
    for start in starts:
        times += frame_times(
            first + start, first + min(start + span_seconds, duration), n_frames, sampling, rate, stride
        )
    return times


def crop_frames(
    path,
    first,
    duration,
    starts,
    span_seconds,
    n_frames,
    transform,
    sampling="uniform",
    stride=1,
    frames_folder=None,
    fps=None,
    frame_offset=0.0,
):
    """uint8 ``[len(starts), n_frames, 3, size, size]``: each evaluation crop's frames (``first``: where the
    clip starts in the file; ``starts``: the crops' starts in the clip, as ``crop_starts`` gives them)."""
    rate = fps or DEFAULT_FPS
    times = crop_frame_times(first, duration, starts, span_seconds, n_frames, sampling, stride, rate)
    frames = transform(read_frames(path, times, frames_folder, rate, frame_offset, decoded_short_side(transform)))
    return frames.reshape(len(starts), n_frames, *frames.shape[1:])
