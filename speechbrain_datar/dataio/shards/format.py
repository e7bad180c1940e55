"""The shard folder's format: settings, ``shards.json``, the record beside each shard, and which shards are finished.

Part of ``speechbrain_datar.dataio.shards`` (the package documents the format).
"""

import hashlib
import logging
import os
import re
import tarfile

from speechbrain_datar.dataio.shard_records import (
    SHARDS_FORMAT,
    DamagedRecord,
    parse_json,
    read_records,
)
from speechbrain_datar.errors import DataError

logger = logging.getLogger(__name__)


INFO_FILE = "shards.json"


REPORT_FILE = "shards_report.json"


#: Training frames are stored at this short side relative to the model's frame size.
FRAME_SIDE_MARGIN = 1.25


JPEG_QUALITY = 90


#: A shard's record (``train-000000.json``); other files in a shard folder are not the shards'.
SHARD_RECORD_NAME = re.compile(r"^([A-Za-z0-9_]+)-(\d{6})\.json$")


MAX_RECORD_FILE_BYTES = 64 << 20


#: The smallest a clip can take in a shard: two members (JSON and audio) of a 512-byte header and a block each.
MIN_CLIP_BYTES = 2048


def shard_settings(sample_rate, crop_seconds=None, frames=None, frame_rate=4.0):
    """What the contents of shards depend on; shards written with other settings are refused.

    Arguments
    ---------
    sample_rate : int
        The recipe's rate: the audio is stored at it.
    crop_seconds : float
        The recipe's span (``clip_seconds``): the evaluation crops of audio-visual recipes have it.
    frames : dict or None
        ``n_frames`` (0 or absent: audio only), ``size``, ``sampling``, ``stride``, ``eval_crops``.
    frame_rate : float
        Frames per second kept for training with uniform sampling (consecutive sampling keeps every frame).

    Example
    -------
    >>> shard_settings(16000)
    {'format': 2, 'sample_rate': 16000}
    """
    settings = {"format": SHARDS_FORMAT, "sample_rate": int(sample_rate)}
    if frames and frames.get("n_frames"):
        settings["frames"] = {key: frames[key] for key in ("n_frames", "size", "sampling", "stride", "eval_crops")}
        settings["frames"].update(
            span_seconds=crop_seconds,
            frame_rate=None if frames["sampling"] == "consecutive" else float(frame_rate),
            short_side=int(round(FRAME_SIDE_MARGIN * frames["size"])),
        )
    return settings


def file_sha256(path, block=1 << 20):
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def shard_info(manifests, settings):
    """What ``shards.json`` records: the settings and the SHA-256 of each split's manifest."""
    return {"settings": settings, "manifests": {split: file_sha256(path) for split, path in sorted(manifests.items())}}


def open_shard_folder(folder, manifests, settings):
    """The shards of each split in ``folder``, after checking they were written from these manifests with
    these settings; ``DataError`` names what differs, or what is missing.

    Returns
    -------
    dict
        ``{split: [shard record, ...]}``; a record is the shard's ``.json`` with ``path`` added.
    """
    path = os.path.join(folder, INFO_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{folder} holds no shards ({INFO_FILE} missing): write them first (--write_shards_only)")
    _refuse_other_preparation(folder, read_shard_info(path), shard_info(manifests, settings))
    shards = {}
    for split in manifests:
        damaged = []
        shards[split] = finished_shards(folder, split, damaged)
        for name, problem in damaged:
            logger.warning("shard record %s is damaged, its shard is left out: %s", name, problem)
        if not shards[split] or not shards[split][-1].get("last"):
            raise DataError(f"the {split} shards in {folder} are incomplete: run the shard writer again to finish them")
    return shards


def read_json_file(path, what, max_depth=8):
    """A small JSON file of the shard folder, strictly parsed (``DataError`` naming it when it is damaged)."""
    try:
        with open(path, "rb") as f:
            return parse_json(f.read(MAX_RECORD_FILE_BYTES + 1), MAX_RECORD_FILE_BYTES, max_depth)
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as error:
        raise DataError(f"{what} {path} is damaged ({error})") from None


def read_shard_info(path):
    """``shards.json``: the settings and manifests' SHA-256 the folder was written with (``DataError`` when it is
    damaged)."""
    info = read_json_file(path, "shard folder description")
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("settings"), dict)
        or not isinstance(info.get("manifests"), dict)
    ):
        raise DataError(f"shard folder description {path} is damaged (no settings and manifests): use another folder")
    return info


def shard_record(path, split, index):
    """A finished shard's record (its ``.json``), checked: ``DataError`` says what is wrong with it."""
    record = read_json_file(path, "shard record")
    expected = {
        "name": str,
        "split": str,
        "first_position": int,
        "next_position": int,
        "ids": list,
        "clips": int,
        "bytes": int,
        "sha256": str,
        "last": bool,
    }
    if not isinstance(record, dict):
        raise DataError(f"shard record {path} is damaged (not an object)")
    wrong = [key for key, kind in expected.items() if not isinstance(record.get(key), kind)]
    if wrong:
        raise DataError(f"shard record {path} is damaged ({', '.join(wrong)} missing or of the wrong type)")
    if record["name"] != f"{split}-{index:06d}.tar" or record["split"] != split:
        raise DataError(f"shard record {path} is damaged (it names {record['name'][:60]!r})")
    if record["clips"] != len(record["ids"]) or not all(isinstance(i, str) for i in record["ids"]):
        raise DataError(f"shard record {path} is damaged ({record['clips']} clips, {len(record['ids'])} ids)")
    if record["bytes"] < 0 or record["clips"] * MIN_CLIP_BYTES > record["bytes"]:
        raise DataError(f"shard record {path} is damaged ({record['clips']} clips in {record['bytes']} bytes)")
    return record


def _refuse_other_preparation(folder, written, expected):
    if written.get("settings") != expected["settings"]:
        differs = sorted(
            key
            for key in set(written.get("settings", {})) | set(expected["settings"])
            if written.get("settings", {}).get(key) != expected["settings"].get(key)
        )
        raise DataError(
            f"the shards in {folder} were written with other settings ({', '.join(differs)}: "
            f"{ {k: written.get('settings', {}).get(k) for k in differs} } there, "
            f"{ {k: expected['settings'].get(k) for k in differs} } here): use another shards_folder"
        )
    if written.get("manifests") != expected["manifests"]:
        raise DataError(
            f"the shards in {folder} were written from another preparation (other clips or labels than the "
            f"manifests of this run): use another shards_folder, or remove it to write them again"
        )


def finished_shards(folder, split, damaged=None):
    """The finished shards of a split, in order (their ``.json`` records, with ``path``).

    A damaged record is a ``DataError`` (the writer's view: it cannot continue after it), or, with a list
    ``damaged``, is added to it as ``(name, problem)`` and left out (the readers' view)."""
    records = []
    index = 0
    while os.path.isfile(meta := os.path.join(folder, f"{split}-{index:06d}.json")):
        try:
            record = shard_record(meta, split, index)
        except DataError as error:
            if damaged is None:
                raise DataError(f"{error}: remove it and its shard to write them again") from None
            damaged.append((os.path.basename(meta), str(error)))
        else:
            record["path"] = os.path.join(folder, record["name"])
            records.append(record)
        index += 1
    return records


def _record_problems(record, limits):
    """What is wrong with a shard's clips (damaged records, or fewer whole clips than its record lists), or
    ``None``."""
    damaged, whole = [], 0
    try:
        for clip in read_records(record["path"], limits, max_members=member_cap(record, limits)):
            if isinstance(clip, DamagedRecord):
                damaged.append(clip)
            else:
                whole += 1
    except (tarfile.TarError, OSError) as error:
        return f"not a readable tar file of its format ({error})"
    if damaged:
        return f"{len(damaged)} damaged records ({damaged[0].reason}: {damaged[0]})"
    if whole != record["clips"]:
        return f"{whole} clips, written {record['clips']}"
    return None


def member_cap(record, limits):
    """The most tar members the shard can hold for the clips its record lists (audio only: two a clip; with frames
    no bound is known beforehand, and stray members are counted instead)."""
    return None if limits.frames else 2 * record["clips"] + 8


def shard_problem(record, full=False):
    """Why a shard cannot be read (missing, size or hash not its record's), or ``None``. Without ``full``, only what
    costs no reading (existence and size)."""
    path = record["path"]
    if not os.path.isfile(path):
        return "missing"
    if os.path.getsize(path) != record["bytes"]:
        return f"size {os.path.getsize(path)} bytes, written {record['bytes']}: truncated or changed"
    if full and file_sha256(path) != record["sha256"]:
        return "content differs from what was written (SHA-256)"
    return None


def _read_member(members, suffix):
    offset, size = members[suffix]
    with open(members["shard"], "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise DataError(f"shard {members['shard']} is cut short")
    return data
