"""Evaluation from shards: each split's clips read by position, the same items as the file pipelines give.

Part of ``speechbrain_datar.dataio.shards`` (the package documents the format).
"""

import logging

import speechbrain as sb
import torch

from speechbrain_datar.dataio.manifest import read_manifest
from speechbrain_datar.dataio.pipelines import label_pipeline
from speechbrain_datar.dataio.shard_records import (
    RecordLimits,
    decode_audio,
)
from speechbrain_datar.dataio.shards.format import _read_member, shard_problem
from speechbrain_datar.dataio.shards.streaming import DamageReport
from speechbrain_datar.dataio.shards.writing import _decode_images
from speechbrain_datar.errors import DataError

logger = logging.getLogger(__name__)


def shard_eval_dataset(shards, manifest, label_encoders, settings, damage_report=None):
    """A validation or test set read from its shards: the same items, in the same order, as the file
    pipelines give (``sig``, ``<key>_encoded``, and ``frames``, ``crop_starts`` for audio-visual recipes).

    The shards are read through once, every record checked as training checks it; a damaged clip or shard is
    reported (the log, and ``damage_report``'s file) and left out, and evaluation goes on with the rest. Clips are
    then read by their place in the shards, so evaluation reads no more than it uses.
    """
    entries = read_manifest(manifest)
    limits = RecordLimits(settings["sample_rate"], entries, settings.get("frames"))
    damage = DamageReport(damage_report)
    by_id = {}
    for record in shards:
        problem = shard_problem(record)
        if problem:
            damage.add(record["path"], "broken_shard", f"cannot be read: {problem}")
            continue
        for clip in damage.read_shard(record["path"], limits, record):
            clip_id = clip.meta["id"]
            if clip_id in by_id:
                damage.add(record["path"], "duplicate", f"clip {clip_id} stands twice in the shards")
                continue
            by_id[clip_id] = dict(clip.offsets, shard=record["path"], meta=clip.meta)
    missing = [key for key in entries if key not in by_id]
    if missing:
        logger.warning(
            "%d clips of %s are not in its shards (left out when written, or damaged)", len(missing), manifest
        )
    data = {key: dict(entry, members=by_id[key]) for key, entry in entries.items() if key in by_id}
    if not data:
        raise DataError(f"no clip of {manifest} is in its shards")

    @sb.utils.data_pipeline.takes("members")
    @sb.utils.data_pipeline.provides("sig")
    def audio(members):
        """The clip's waveform from its shard record."""
        return decode_audio(_read_member(members, "audio.npy"), members["meta"]["samples"])

    items = [audio] + [label_pipeline(key, encoder) for key, encoder in label_encoders.items()]
    keys = ["id", "sig"] + [f"{key}_encoded" for key in label_encoders]
    if settings.get("frames"):

        @sb.utils.data_pipeline.takes("members")
        @sb.utils.data_pipeline.provides("frames", "crop_starts")
        def crops(members):
            """The record's crops' frames ``[n_crops, n_frames, 3, H, W]``."""
            names = sorted(name for name in members if name.startswith("crop."))
            pictures = _decode_images([_read_member(members, name) for name in names]).contiguous()
            starts = members["meta"]["crop_starts"]
            yield pictures.reshape(len(starts), -1, *pictures.shape[1:])
            yield torch.tensor(starts)

        items.append(crops)
        keys += ["frames", "crop_starts"]
    dataset = sb.dataio.dataset.DynamicItemDataset(data, dynamic_items=items, output_keys=keys)
    return dataset.filtered_sorted(sort_key="duration")
