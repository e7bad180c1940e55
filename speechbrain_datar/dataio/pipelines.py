"""The data pipelines of the recipes: which span of a clip an example covers, its audio, its frames, its labels.

``build_datasets`` turns the prepared manifests into SpeechBrain ``DynamicItemDataset`` s
whose items are ``sig`` (the waveform of the span), ``<key>_encoded`` per label and,
for audio-visual models, ``frames`` over the same span.
"""

import logging
import os

import speechbrain as sb
import torch

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.crops import crop_frames, crop_starts, decoded_short_side, read_frames
from speechbrain_datar.dataio.frames import DEFAULT_FPS, FrameTransform, frame_times
from speechbrain_datar.dataio.manifest import read_manifest
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
        """The clip's span ``(first, last)`` in seconds: a random crop in training, else all of it."""
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
        """The span's mono waveform."""
        first, last = span
        return load_clip(path, sample_rate, first if first else None, last)

    return pipeline


def frames_pipeline(n_frames, size, sampling="uniform", stride=1, train=False):
    """Dynamic item ``(path, span, duration, frames_folder, fps, frame_offset) -> frames``: uint8
    ``[n_frames, 3, size, size]`` over the span, from the video file or from extracted frames."""
    transform = FrameTransform(size, train=train)

    @sb.utils.data_pipeline.takes("path", "span", "duration", "frames_folder", "fps", "frame_offset")
    @sb.utils.data_pipeline.provides("frames")
    def pipeline(path, span, duration, frames_folder, fps, frame_offset):
        """The span's frames, transformed."""
        first, last = span
        last = first + duration if last is None else last  # a whole clip's span ends with the clip
        rate = fps or DEFAULT_FPS
        times = frame_times(first, last, n_frames, sampling, rate, stride, random_start=train)
        return transform(read_frames(path, times, frames_folder, rate, frame_offset, decoded_short_side(transform)))

    return pipeline


def crop_frames_pipeline(n_frames, size, span_seconds, n_crops, sampling="uniform", stride=1):
    """Evaluation's dynamic items ``-> frames, crop_starts``: uint8 ``[n_crops, n_frames, 3, size, size]``, the
    frames of ``n_crops`` crops of ``span_seconds`` over the whole clip, and the crops' starts (seconds into
    the clip) for the audio to be cut alike (``temporal_crops.embed_crops``)."""
    transform = FrameTransform(size)

    @sb.utils.data_pipeline.takes("path", "span", "duration", "frames_folder", "fps", "frame_offset")
    @sb.utils.data_pipeline.provides("frames", "crop_starts")
    def pipeline(path, span, duration, frames_folder, fps, frame_offset):
        """The clip's evaluation crops' frames and their start times."""
        starts = crop_starts(duration, span_seconds, n_crops)
        yield crop_frames(
            path,
            span[0],
            duration,
            starts,
            span_seconds,
            n_frames,
            transform,
            sampling,
            stride,
            frames_folder,
            fps,
            frame_offset,
        )
        yield torch.tensor(starts)

    return pipeline


def encode_label(label, encoder):
    """The class index ``[1]`` of a label, or the multi-hot vector ``[n_classes]`` of a list of labels
    (multi-label tagging); an unknown label is a clear error.

    Example
    -------
    >>> encoder = sb.dataio.encoder.CategoricalEncoder()
    >>> encoder.update_from_iterable(["cat", "dog"])
    >>> encode_label("dog", encoder), encode_label(["cat", "dog"], encoder)
    (tensor([1]), tensor([1., 1.]))
    """

    def index(one):
        """The label's index; an unseen label is a ``DataError``."""
        if one not in encoder.lab2ind:
            raise DataError(f"label {one!r} was not seen in training; re-run data preparation")
        return encoder.lab2ind[one]

    if isinstance(label, list):
        vector = torch.zeros(len(encoder))
        vector[[index(one) for one in label]] = 1.0
        return vector
    return torch.LongTensor([index(label)])


def label_pipeline(key, encoder):
    """Dynamic item ``key -> key_encoded``: ``encode_label`` of the entry's label (or labels)."""

    @sb.utils.data_pipeline.takes(key)
    @sb.utils.data_pipeline.provides(f"{key}_encoded")
    def pipeline(label):
        """The encoded label (or labels)."""
        return encode_label(label, encoder)

    return pipeline


def build_datasets(manifests, label_encoders, sample_rate, crop_seconds, frames=None):
    """``DynamicItemDataset`` per split; training clips are randomly cropped to ``crop_seconds``.

    ``frames`` (``n_frames``, ``size``, ``sampling``, ``stride``, ``eval_crops``), when given with
    ``n_frames`` > 0, adds a ``frames`` item: over the same span as the audio in training; in
    evaluation, the frames of ``eval_crops`` crops of ``crop_seconds`` and their ``crop_starts``.
    Evaluation splits are sorted by duration so that batches hold clips of similar length.
    Clips that disappeared since preparation are left out, with a warning.
    """
    datasets = {}
    for split, path in manifests.items():
        train = split == "train"
        items = [span_pipeline(crop_seconds if train else None), audio_pipeline(sample_rate)]
        items += [label_pipeline(key, encoder) for key, encoder in label_encoders.items()]
        keys = ["id", "sig"] + [f"{key}_encoded" for key in label_encoders]
        if frames and frames.get("n_frames") and train:
            items.append(
                frames_pipeline(frames["n_frames"], frames["size"], frames["sampling"], frames["stride"], train=True)
            )
            keys.append("frames")
        elif frames and frames.get("n_frames"):
            items.append(
                crop_frames_pipeline(
                    frames["n_frames"],
                    frames["size"],
                    crop_seconds,
                    frames["eval_crops"],
                    frames["sampling"],
                    frames["stride"],
                )
            )
            keys += ["frames", "crop_starts"]
        entries = read_manifest(path)
        present = {key: entry for key, entry in entries.items() if os.path.isfile(entry["path"])}
        if len(present) < len(entries):
            logger.warning(
                "%s: %d clips of %s have disappeared since preparation and are skipped",
                split,
                len(entries) - len(present),
                path,
            )
        if not present:
            raise DataError(
                f"the {split} split has no clip to {'train on' if train else 'evaluate'} ({path}): see "
                f"prepare_report.json beside it for what preparation left out"
            )
        present = sb.dataio.dataset.DynamicItemDataset(present, dynamic_items=items, output_keys=keys)
        datasets[split] = present if split == "train" else present.filtered_sorted(sort_key="duration")
    return datasets
