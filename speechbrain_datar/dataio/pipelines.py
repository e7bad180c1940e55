"""The data pipelines of the recipes: which span of a clip an example covers, its audio, its frames, its labels.

``build_datasets`` turns the prepared manifests into SpeechBrain ``DynamicItemDataset`` s
whose items are ``sig`` (the waveform of the span), ``<key>_encoded`` per label and,
for audio-visual models, ``frames`` over the same span.
"""

import logging
import math
import os

import speechbrain as sb
import torch

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.frames import FrameTransform, frame_times
from speechbrain_datar.dataio.video import read_frame_dumps, read_video_frames
from speechbrain_datar.errors import DataError

logger = logging.getLogger(__name__)


def span_pipeline(crop_seconds=None):
    """Dynamic item ``(start, stop, duration) -> span``: the seconds of the file a training example covers.

    With ``crop_seconds``, a random crop of that length inside the clip (or segment);
    otherwise all of it. Audio and frames are both read over this span.
    """

    @sb.utils.data_pipeline.takes("start", "stop", "duration")
    @sb.utils.data_pipeline.provides("span")
    def pipeline(start, stop, duration):
        first = start or 0.0
        if crop_seconds is None or duration <= crop_seconds:
            return first, stop  # stop None: to the end of the file
        offset = float(torch.empty(()).uniform_(0.0, duration - crop_seconds))
        return first + offset, first + offset + crop_seconds

    return pipeline


def audio_pipeline(sample_rate):
    """Dynamic item ``(path, span) -> sig``: the mono waveform of the span."""

    @sb.utils.data_pipeline.takes("path", "span")
    @sb.utils.data_pipeline.provides("sig")
    def pipeline(path, span):
        first, last = span
        return load_clip(path, sample_rate, first if first else None, last)

    return pipeline


def frames_pipeline(n_frames, size, sampling="uniform", stride=1, train=False):
    """Dynamic item ``(path, span, duration, frames_folder, fps, frame_offset) -> frames``: uint8
    ``[n_frames, 3, size, size]`` over the span, from the video file or from extracted frames
    (``frames_folder/frame_%010d.jpg``, the frame at ``t`` seconds numbered ``t * fps + frame_offset``)."""
    transform = FrameTransform(size, train=train)

    @sb.utils.data_pipeline.takes("path", "span", "duration", "frames_folder", "fps", "frame_offset")
    @sb.utils.data_pipeline.provides("frames")
    def pipeline(path, span, duration, frames_folder, fps, frame_offset):
        first, last = span
        last = first + duration if last is None else last  # a whole clip's span ends with the clip
        times = frame_times(first, last, n_frames, sampling, fps or 25.0, stride, random_start=train)
        if frames_folder:
            # the frame shown at t, as from the video: the last one that started by then
            frames = read_frame_dumps(frames_folder, [math.floor(t * fps + frame_offset + 1e-6) for t in times])
        else:
            frames = read_video_frames(path, times)
        return transform(frames)

    return pipeline


def label_pipeline(key, encoder):
    """Dynamic item ``key -> key_encoded``; an unknown label is a clear error."""

    @sb.utils.data_pipeline.takes(key)
    @sb.utils.data_pipeline.provides(f"{key}_encoded")
    def pipeline(label):
        if label not in encoder.lab2ind:
            raise DataError(f"label {label!r} was not seen in training; re-run data preparation")
        return torch.LongTensor([encoder.lab2ind[label]])

    return pipeline


def build_datasets(manifests, label_encoders, sample_rate, crop_seconds, frames=None):
    """``DynamicItemDataset`` per split; training clips are randomly cropped to ``crop_seconds``.

    ``frames`` (``n_frames``, ``size``, ``sampling``, ``stride``), when given with
    ``n_frames`` > 0, adds a ``frames`` item over the same span as the audio.
    Evaluation splits are sorted by duration so that batches hold clips of similar length.
    Clips that disappeared since preparation are left out, with a warning.
    """
    datasets = {}
    for split, path in manifests.items():
        train = split == "train"
        items = [span_pipeline(crop_seconds if train else None), audio_pipeline(sample_rate)]
        items += [label_pipeline(key, encoder) for key, encoder in label_encoders.items()]
        keys = ["id", "sig"] + [f"{key}_encoded" for key in label_encoders]
        if frames and frames.get("n_frames"):
            items.append(frames_pipeline(frames["n_frames"], frames["size"], frames.get("sampling", "uniform"),
                                         frames.get("stride", 1), train=train))
            keys.append("frames")
        dataset = sb.dataio.dataset.DynamicItemDataset.from_json(path, dynamic_items=items, output_keys=keys)
        present = dataset.filtered_sorted(key_test={"path": os.path.isfile})
        if len(present) < len(dataset):
            logger.warning("%s: %d clips of %s have disappeared since preparation and are skipped",
                           split, len(dataset) - len(present), path)
        datasets[split] = present if split == "train" else present.filtered_sorted(sort_key="duration")
    return datasets
