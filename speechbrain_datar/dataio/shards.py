"""Tar shards of a prepared data set: written once, streamed to every training process.

At AudioSet or VGGSound scale, opening and decoding one media file per training example makes the
loader, not the model, the bound of a run. ``write_shards`` decodes every clip of the prepared
manifests once and writes each split into tar shards of about ``shard_megabytes``:

- ``<n>.json``: the clip's manifest entry (labels, duration, ...) and what the shard holds of it;
- ``<n>.audio.npy``: its mono waveform at the recipe's rate, float32, exactly what ``load_clip`` gives
  (lossless: evaluation from shards equals evaluation from the files);
- audio-visual recipes, training split: ``<n>.frame.<k>.jpg``, the clip's frames on a grid of
  ``frame_rate`` frames per second (every frame of the video for consecutive sampling; the very frames
  training reads when the clip is not longer than the span), JPEG at a short
  side a little above the model's frame size, enough for random resized crops;
- audio-visual recipes, evaluation splits: ``<n>.crop.<k>.png``, the evaluation crops' frames exactly as
  the file pipeline gives them (lossless), and their starts in the JSON.

``<split>-000000.tar`` are finished shards; each has a ``.json`` beside it (its clips, their positions
in the split's order, its size and SHA-256), so that a killed write continues after the last finished
shard and ``check_shards`` can verify every shard. ``shards.json`` records the settings and the
preparation (SHA-256 of the manifests) the shards were written from: a folder written from another
preparation, or with another sample rate or frame setting, is refused. ``shards_report.json`` says what
went in and what was left out, and why.

Training streams the shards (``ShardStream``): every epoch, shards are dealt to the training processes
and their loader workers (each shard read by one worker, sequentially), clips are shuffled within a
buffer, and each process gets the same number of batches, so that every clip is seen exactly once per
epoch whatever the number of processes and workers. Evaluation reads its shards by position
(``shard_eval_dataset``) and gives the same items as the file pipelines.
"""

import bisect
import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import random
import re
import tarfile

import numpy as np
import speechbrain as sb
import torch
from PIL import Image
from tqdm import tqdm

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.crops import crop_frame_times, crop_starts, read_frames
from speechbrain_datar.dataio.frames import DEFAULT_FPS, FrameTransform, frame_times
from speechbrain_datar.dataio.manifest import read_manifest
from speechbrain_datar.dataio.pipelines import encode_label, label_pipeline
from speechbrain_datar.dataio.problems import ClipProblem
from speechbrain_datar.dataio.shard_records import (
    MAX_REPORTED,
    SHARDS_FORMAT,
    DamagedRecord,
    RecordLimits,
    decode_audio,
    parse_json,
    read_records,
    record_digest,
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


# ------------------------------------------------------------------------------------------------ settings
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


# ------------------------------------------------------------------------------------------------- writing
def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _image_bytes(frame, fmt):
    """uint8 ``[3, H, W]`` -> JPEG or PNG bytes."""
    buffer = io.BytesIO()
    image = Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy())
    image.save(buffer, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _decode_images(images):
    """JPEG or PNG bytes -> uint8 ``[n, 3, H, W]`` in channels-last memory (what the frame transform's
    fast path reads, without a copy)."""
    decoded = []
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            decoded.append(torch.from_numpy(np.array(image if image.mode == "RGB" else image.convert("RGB"))))
    return torch.stack(decoded).permute(0, 3, 1, 2)


def training_frame_times(duration, frames, fps):
    """Times (seconds into the clip) of the frames stored for training.

    A clip no longer than the training span with uniform sampling always gives the same frames: those are
    stored. Otherwise a grid: the middle of each ``1 / frame_rate`` seconds (every frame of the video for
    consecutive sampling); training takes, for each time it asks for, the stored frame nearest to it.

    Example
    -------
    >>> frames = {"n_frames": 2, "sampling": "uniform", "span_seconds": 1.0, "frame_rate": 4.0}
    >>> training_frame_times(1.0, frames, 25.0), training_frame_times(2.0, frames, 25.0)
    ([0.25, 0.75], [0.125, 0.375, 0.625, 0.875, 1.125, 1.375, 1.625, 1.875])
    """
    span = frames["span_seconds"]
    if frames["sampling"] == "uniform" and (span is None or duration <= span):
        return frame_times(0.0, duration, frames["n_frames"])
    rate = frames["frame_rate"] or fps
    return [(k + 0.5) / rate for k in range(max(1, math.ceil(duration * rate - 1e-6)))]


def encode_clip(key, entry, split, settings):
    """The members of one clip's record (``{suffix: bytes}``) and its metadata."""
    start, stop = entry.get("start"), entry.get("stop")
    wav = load_clip(entry["path"], settings["sample_rate"], start if start else None, stop).numpy()
    meta = {name: value for name, value in entry.items() if name not in ("path", "frames_folder")}
    meta["id"] = key
    meta["samples"] = int(wav.shape[0])
    members = {"audio.npy": _npy_bytes(wav.astype(np.float32, copy=False))}
    frames = settings.get("frames")
    if frames:
        first, duration = start or 0.0, entry["duration"]
        fps = entry.get("fps") or DEFAULT_FPS
        source = (entry["path"], entry.get("frames_folder"), fps, entry.get("frame_offset", 0.0))
        if split == "train":
            times = training_frame_times(duration, frames, fps)
            pictures = read_frames(source[0], [first + t for t in times], *source[1:], frames["short_side"])
            meta["frame_times"] = times
            members.update({f"frame.{k:05d}.jpg": _image_bytes(p, "JPEG") for k, p in enumerate(pictures)})
        else:
            starts = crop_starts(duration, frames["span_seconds"], frames["eval_crops"])
            times = crop_frame_times(
                first,
                duration,
                starts,
                frames["span_seconds"],
                frames["n_frames"],
                frames["sampling"],
                frames["stride"],
                fps,
            )
            transform = FrameTransform(frames["size"])
            pictures = transform(read_frames(source[0], times, *source[1:], 2 * frames["size"]))
            meta["crop_starts"] = starts
            members.update({f"crop.{k:05d}.png": _image_bytes(p, "PNG") for k, p in enumerate(pictures)})
    return members, meta


def fresh_file(path):
    """A new file at ``path`` open for writing: whatever stood there (a link included) is removed first and the file
    is created exclusively, never through a link, so that a writer never writes outside its folder."""
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            raise DataError(f"{path} is a folder where the shard writer writes a file: remove it")
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o644), "wb")


class _ShardSink:
    """The shard being written: ``<name>.part`` until it is finished, then renamed with its ``.json``."""

    def __init__(self, folder, split, index, first_position):
        self.folder, self.name = folder, f"{split}-{index:06d}.tar"
        self.part = os.path.join(folder, self.name + ".part")
        self.file = fresh_file(self.part)
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.PAX_FORMAT)
        self.record = {"name": self.name, "split": split, "first_position": first_position, "ids": []}

    def add(self, position, members, meta):
        key = f"{position:09d}"
        meta = dict(meta, position=position)
        meta["sha256"] = record_digest(members, meta)
        for suffix, data in [("json", json.dumps(meta).encode())] + list(members.items()):
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size = len(data)
            info.mtime = 0  # shards written twice from the same data are the same bytes
            self.tar.addfile(info, io.BytesIO(data))
        self.record["ids"].append(meta["id"])

    def size(self):
        return self.tar.fileobj.tell()

    def finish(self, next_position, last):
        self.tar.close()
        self.file.close()
        self.record.update(
            next_position=next_position,
            last=last,
            clips=len(self.record["ids"]),
            bytes=os.path.getsize(self.part),
            sha256=file_sha256(self.part),
        )
        os.replace(self.part, os.path.join(self.folder, self.name))
        _write_json(os.path.join(self.folder, self.name[: -len(".tar")] + ".json"), self.record)
        return self.record


def _write_json(path, data):
    """Writes JSON through a temporary file, so that a killed write never leaves half a file (both created afresh:
    never written through a link)."""
    with fresh_file(path + ".tmp") as f:
        f.write(json.dumps(data, indent=1).encode())
    os.replace(path + ".tmp", path)


def split_order(entries, split, seed):
    """The order clips are written in: the manifest's, shuffled for the training split (a shard then holds
    every class, and a shuffle buffer mixes them further)."""
    keys = list(entries)
    if split == "train":
        random.Random(seed).shuffle(keys)
    return keys


def write_shards(manifests, folder, settings, shard_megabytes=256, seed=1234, progress=True, workers=0):
    """Writes each split's clips into tar shards of about ``shard_megabytes`` in ``folder``.

    A folder with finished shards of the same preparation and settings is continued after its last finished
    shard (a killed write resumes; a finished one is not written again); one written from another
    preparation is refused. Clips that cannot be read are left out and counted in ``shards_report.json``.

    Arguments
    ---------
    manifests : dict
        ``{split: manifest path}`` (the prepared ``train.json``, ``valid.json``, ``test.json``).
    folder : str
        Where the shards go.
    settings : dict
        ``shard_settings(...)`` of the recipe.
    shard_megabytes : float
        A shard is finished once it holds this much.
    seed : int
        Seed of the training split's order.
    progress : bool
        Show a progress bar per split.
    workers : int
        Processes that decode clips (0 or 1: this one); the shards are the same whatever their number.

    Returns
    -------
    dict
        The report: per split, clips written, shards, bytes, and the clips left out with their reasons.

    Example
    -------
    >>> import tempfile, soundfile
    >>> data = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(data, "a.wav"), np.zeros(8000, dtype="float32"), 16000)
    >>> with open(os.path.join(data, "train.json"), "w") as f:
    ...     json.dump({"a": {"path": os.path.join(data, "a.wav"), "duration": 0.5, "label": "x"}}, f)
    >>> report = write_shards({"train": os.path.join(data, "train.json")}, os.path.join(data, "shards"),
    ...                       shard_settings(16000), progress=False)
    >>> report["train"]["clips"], report["train"]["shards"]
    (1, 1)
    """
    os.makedirs(folder, exist_ok=True)
    info = shard_info(manifests, settings)
    info_path = os.path.join(folder, INFO_FILE)
    if os.path.isfile(info_path) and not os.path.islink(info_path):
        _refuse_other_preparation(folder, read_shard_info(info_path), info)
    elif any(name.endswith((".tar", ".tar.part")) for name in os.listdir(folder)):
        raise DataError(f"{folder} holds shards without {INFO_FILE}: use another shards_folder")
    else:
        _write_json(info_path, info)
    report_path = os.path.join(folder, REPORT_FILE)
    report = {}
    if os.path.isfile(report_path) and not os.path.islink(report_path):
        try:
            report = read_json_file(report_path, "shard report")
        except DataError as error:
            logger.warning("%s: it is written again", error)
        if not isinstance(report, dict) or not all(isinstance(v, dict) for v in report.values()):
            report = {}
    pending = [split for split in manifests if not _split_finished(folder, split)]
    with _encoder_pool(workers if pending else 0) as pool:  # worker processes only when there is work
        for split, manifest in manifests.items():
            report[split] = _write_split(
                split,
                read_manifest(manifest),
                folder,
                settings,
                shard_megabytes,
                seed,
                report.get(split, {}),
                report,
                report_path,
                progress,
                pool,
            )
    return report


def _split_finished(folder, split):
    done = finished_shards(folder, split)
    return bool(done) and done[-1]["last"]


def _write_split(
    split, entries, folder, settings, shard_megabytes, seed, previous, report, report_path, progress, pool
):
    keys = split_order(entries, split, seed)
    done = finished_shards(folder, split)
    skipped = previous.get("skipped", {})
    skipped = dict(skipped) if isinstance(skipped, dict) else {}
    if done and done[-1]["last"]:
        return _split_report(done, skipped)
    start = done[-1]["next_position"] if done else 0
    # a shard a killed write left unfinished (``.part``) is written again from its first clip: its sink replaces it
    limit = shard_megabytes * 2**20
    sink = None
    bar = tqdm(total=len(keys), initial=start, desc=f"shards ({split})", disable=not progress, unit="clip")
    jobs = ((keys[position], entries[keys[position]], split, settings) for position in range(start, len(keys)))
    encoded = pool.imap(_encoded_or_problem, jobs, chunksize=4) if pool else map(_encoded_or_problem, jobs)
    for position, (members, meta, problem) in enumerate(encoded, start):
        if problem:
            skipped[keys[position]] = problem[0]
            logger.warning("shards: %s left out (%s)", keys[position], problem[1])
        else:
            sink = sink or _ShardSink(folder, split, len(done), position)
            sink.add(position, members, meta)
            if sink.size() >= limit and position + 1 < len(keys):
                done.append(sink.finish(position + 1, last=False))
                sink = None
                report[split] = _split_report(done, skipped)
                _write_json(report_path, report)  # what was skipped survives a kill
        bar.update(1)
    bar.close()
    sink = sink or _ShardSink(folder, split, len(done), len(keys))  # an empty last shard marks the end
    done.append(sink.finish(len(keys), last=True))
    report[split] = _split_report(done, skipped)
    _write_json(report_path, report)
    logger.info(
        "shards (%s): %d clips in %d shards, %d left out", split, report[split]["clips"], len(done), len(skipped)
    )
    return report[split]


def _encoded_or_problem(job):
    """``encode_clip`` of one clip, or why it cannot be read: ``(members, meta, None)`` or ``(None, None,
    (reason, message))`` (what a worker process sends back)."""
    try:
        return (*encode_clip(*job), None)
    except ClipProblem as problem:
        return None, None, (problem.reason, str(problem))
    except (OSError, ValueError, RuntimeError) as error:  # a file gone or damaged since preparation
        return None, None, ("unreadable", str(error))


@contextlib.contextmanager
def _encoder_pool(workers):
    """Processes that decode clips for the writer (``None``: decode in this process). Started with spawn:
    a process forked from one that ran torch's thread pool can hang."""
    if workers <= 1:
        yield None
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool


def _split_report(done, skipped):
    return {
        "clips": sum(record["clips"] for record in done),
        "shards": len(done),
        "bytes": sum(record["bytes"] for record in done),
        "skipped": skipped,
    }


def check_shards(folder, manifests=None):
    """Verifies every finished shard in ``folder`` as training and evaluation read it: its record, its size and
    SHA-256, and each clip's record (the checks of ``shard_records.read_records``; with ``manifests``, ``{split:
    manifest path}`` of the preparation the folder was written from, also that every clip is one of its split's
    and its metadata its manifest entry, as training and evaluation check). Files that are not a shard's record
    (``notes.json``) are not the shards' and are passed over.

    Returns
    -------
    dict
        ``{shard name: problem}``, empty when every shard is whole.
    """
    problems = {}
    try:
        info = read_shard_info(os.path.join(folder, INFO_FILE))
        settings = info["settings"]
        if manifests:
            _refuse_other_preparation(folder, info, shard_info(manifests, settings))
        entries = {split: read_manifest(path) for split, path in (manifests or {}).items()}
        limits = {
            split: RecordLimits(settings["sample_rate"], entries.get(split), settings.get("frames"))
            for split in {*entries, None}
        }
    except (DataError, KeyError, TypeError, ValueError) as error:
        return {INFO_FILE: str(error)}
    for name in sorted(os.listdir(folder)):
        match = SHARD_RECORD_NAME.match(name)
        if not match:
            continue
        try:
            record = shard_record(os.path.join(folder, name), match.group(1), int(match.group(2)))
        except DataError as error:
            problems[name] = str(error)
            continue
        record["path"] = os.path.join(folder, record["name"])
        split_limits = limits.get(record["split"], limits[None])
        problem = shard_problem(record, full=True) or _record_problems(record, split_limits)
        if problem:
            problems[record["name"]] = problem
    return problems


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


# ------------------------------------------------------------------------------------------------- reading
class DamageReport:
    """Damage found while reading shards: each damaged clip or shard is logged (by name, the first ``MAX_REPORTED``
    of a shard; the rest counted in one line) and, with ``path``, appended to it as a JSON line ``{"shard",
    "reason", "message", "epoch"}`` (every loader worker appends its own lines).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "damage.jsonl")
    >>> report = DamageReport(path)
    >>> report.add("train-000000.tar", "non_finite", "record 000000001 (a): audio is not finite")
    >>> [line["reason"] for line in DamageReport.read(path)]
    ['non_finite']
    """

    def __init__(self, path=None):
        self.path, self.counts, self.epoch = path, {}, None

    def add(self, shard, reason, message):
        """One damaged clip (or the rest of a shard) of ``shard``."""
        count = self.counts[shard] = self.counts.get(shard, 0) + 1
        if count <= MAX_REPORTED:
            logger.warning("shard %s: %s; left out", shard, message)
        elif count == MAX_REPORTED + 1:
            logger.warning("shard %s: more damaged clips; the rest are counted in the report only", shard)
        if self.path:
            line = {"shard": shard, "reason": reason, "message": message[:500], "epoch": self.epoch}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    def read_shard(self, path, limits, record):
        """The whole clips of a shard, damage reported (a broken tar structure: the rest of the shard)."""
        try:
            for clip in read_records(path, limits, max_members=member_cap(record, limits)):
                if isinstance(clip, DamagedRecord):
                    self.add(path, clip.reason, str(clip))
                else:
                    yield clip
        except (tarfile.TarError, OSError) as error:
            self.add(path, "broken_shard", f"the rest of the shard is unreadable ({error})")

    @staticmethod
    def read(path):
        """The lines a report file holds."""
        if not path or not os.path.isfile(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def nearest(times, t):
    """Index of the time in the sorted ``times`` nearest to ``t`` (the earlier one of two as near).

    Example
    -------
    >>> nearest([0.125, 0.375, 0.625], 0.5), nearest([0.125, 0.375, 0.625], 0.9)
    (1, 2)
    """
    i = bisect.bisect_left(times, t)
    if i == 0:
        return 0
    if i == len(times) or t - times[i - 1] <= times[i] - t:
        return i - 1
    return i


def training_example(clip, sample_rate, crop_seconds, label_encoders, frames=None, transform=None):
    """One training example from a stored clip (``shard_records.StoredClip``), as the file pipelines make it: a
    random crop of ``crop_seconds`` (the whole clip if it is not longer), its frames from the stored grid with
    the training transform, and the encoded labels."""
    meta, members, wav = clip.meta, clip.members, clip.audio
    duration = meta["duration"]
    first, last = 0.0, duration
    if crop_seconds is not None and duration > crop_seconds:
        first = float(torch.empty(()).uniform_(0.0, duration - crop_seconds))
        last = first + crop_seconds
        lo = int(round(first * sample_rate))
        hi = lo + int(round(crop_seconds * sample_rate))
        wav = torch.nn.functional.pad(wav[lo:hi], (0, max(0, hi - lo - wav[lo:hi].shape[0])))
    example = {"id": meta["id"], "sig": wav}
    for key, encoder in label_encoders.items():
        example[f"{key}_encoded"] = encode_label(meta[key], encoder)
    if frames:
        fps = meta.get("fps") or DEFAULT_FPS
        times = frame_times(first, last, frames["n_frames"], frames["sampling"], fps, frames["stride"], True)
        stored = sorted(name for name in members if name.startswith("frame."))
        picks = [nearest(meta["frame_times"], t) for t in times]
        unique = sorted(set(picks))
        decoded = _decode_images([members[stored[k]] for k in unique])
        order = [unique.index(k) for k in picks]
        example["frames"] = transform(decoded if order == list(range(len(unique))) else decoded[order])
    return example


class ShardStream(torch.utils.data.IterableDataset):
    """Training batches streamed from tar shards: each clip once per epoch over all processes and workers.

    Every epoch (``set_epoch``, which SpeechBrain's ``Brain`` calls on its ``train_sampler``), the shards are
    dealt to the training processes and to their loader workers (``plan_epoch``); a worker reads its shards
    in turn, shuffles clips in a buffer and yields ``PaddedBatch`` es of the sizes the plan gives it, so that
    every process makes the same number of steps. A shard that is missing or truncated is reported by name
    and left out of the epoch; a damaged clip (its bytes are not those written) is reported and skipped, and
    a shard whose tar structure breaks is reported and the rest of it skipped; a worker that lost clips to
    damage repeats a batch (with a warning) rather than make fewer steps than the other processes wait for.
    Use it in a ``DataLoader`` with ``batch_size=None``.

    With ``expected_draws`` (class-balanced sampling, AudioSet's), a clip is used a number of times per
    epoch drawn around its expected count (``draws_in_epoch``) instead of once: the classes are balanced as
    by a weighted sampler with replacement, while the shards are still read in sequence.

    Arguments
    ---------
    shards : list
        The training split's shard records (``open_shard_folder``).
    label_encoders : dict
        Label key -> ``CategoricalEncoder``.
    settings : dict
        The shards' settings.
    crop_seconds : float
        Training crop.
    batch_size : int
        Largest batch.
    num_workers : int
        The loader's workers (0: the main process).
    shuffle_buffer : int
        Clips a worker shuffles among.
    seed : int
        Seed of the shards' order and of the buffer.
    rank, world_size : int or None
        This process's place among the training processes (default: ``torch.distributed``'s, else the
        ``RANK`` and ``WORLD_SIZE`` environment variables, else one process).
    expected_draws : dict or None
        Clip id -> how many times per epoch it is used on average (``None``: once each).
    entries : dict or None
        The training manifest's entries: a record of another clip, or whose metadata differs from its entry,
        is damage (``None``: any clip the shards hold).
    damage_report : str or None
        A file the damaged clips are appended to (``DamageReport``), besides the log.
    """

    def __init__(
        self,
        shards,
        label_encoders,
        settings,
        crop_seconds,
        batch_size,
        num_workers=0,
        shuffle_buffer=1000,
        seed=1234,
        rank=None,
        world_size=None,
        expected_draws=None,
        entries=None,
        damage_report=None,
    ):
        super().__init__()
        self.expected_draws = expected_draws
        self.limits = RecordLimits(settings["sample_rate"], entries, settings.get("frames"))
        self.damage = DamageReport(damage_report)
        self.label_encoders, self.settings = label_encoders, settings
        self.crop_seconds, self.batch_size, self.seed = crop_seconds, int(batch_size), int(seed)
        self.num_workers, self.shuffle_buffer = max(1, int(num_workers)), int(shuffle_buffer)
        self.rank, self.world_size = _rank_and_world_size() if rank is None else (int(rank), int(world_size))
        self.shards = []
        for record in shards:
            problem = shard_problem(record)
            if problem:
                logger.warning("shard %s is left out: %s", record["path"], problem)
            elif record["clips"]:
                self.shards.append(record)
        if not self.shards:
            raise DataError("no training shard can be read: see the warnings above, or write the shards again")
        self.epoch, self.skip = 0, 0
        #: A callable giving the steps already made in the current epoch (the Brain's ``step`` after it
        #: recovered an intra-epoch checkpoint); ``None``: epochs always start from their first batch.
        self.steps_done = None
        self.plan = plan_epoch(
            self._clips_per_shard(), self.world_size, self.num_workers, self.batch_size, 0, self.seed
        )

    def _draws(self, clip_id):
        """How many times the clip is used in this epoch (the same in every process)."""
        if self.expected_draws is None:
            return 1
        return draws_in_epoch(self.expected_draws.get(clip_id, 0.0), self.seed, self.epoch, clip_id)

    def _clips_per_shard(self):
        if self.expected_draws is None:
            return [record["clips"] for record in self.shards]
        return [sum(self._draws(clip_id) for clip_id in record["ids"]) for record in self.shards]

    def set_epoch(self, epoch):
        """Deals the shards for ``epoch`` (the same plan in every process). When ``steps_done`` says the epoch
        was interrupted after some steps (a run resumed from an intra-epoch checkpoint), its first batches are
        drawn again but not decoded, so that the rest of the epoch holds the clips it would have held."""
        self.epoch = self.damage.epoch = int(epoch)
        self.plan = plan_epoch(
            self._clips_per_shard(), self.world_size, self.num_workers, self.batch_size, self.epoch, self.seed
        )
        self.skip = int(self.steps_done()) if self.steps_done is not None else 0

    def __len__(self):
        """The epoch's steps in this process (those of a resumed epoch included, as SpeechBrain counts them)."""
        return sum(len(part["batches"]) for part in self.plan[self.rank])

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        parts = self.plan[self.rank]
        if worker is None:  # the main process reads every worker's part, one after the other
            left = self.skip
            for part in parts:
                yield from self._batches(part, min(left, len(part["batches"])))
                left -= min(left, len(part["batches"]))
            return
        if worker.num_workers != self.num_workers:
            raise DataError(
                f"ShardStream was planned for {self.num_workers} workers, the loader has {worker.num_workers}"
            )
        skips = round_robin_counts([len(part["batches"]) for part in parts], self.skip)
        yield from self._batches(parts[worker.id], skips[worker.id])

    def _records(self, part):
        """The whole clips of the part's shards in turn; damage is reported, and skipped."""
        for index in part["shards"]:
            record = self.shards[index]
            for clip in self.damage.read_shard(record["path"], self.limits, record):
                yield from [clip] * self._draws(clip.meta["id"])

    def _batches(self, part, skip=0):
        """The part's batches from a shuffle buffer of records; the first ``skip`` are drawn, not decoded."""
        frames = self.settings.get("frames")
        transform = FrameTransform(frames["size"], train=True) if frames else None
        rng = random.Random(hash((self.seed, self.epoch, self.rank, tuple(part["shards"]))))
        sizes, buffer, drawn, last = list(part["batches"]), [], [0], [None]

        def example(clip):
            """A clip's training example, or ``None`` (reported) when its frames do not decode."""
            try:
                return training_example(
                    clip, self.settings["sample_rate"], self.crop_seconds, self.label_encoders, frames, transform
                )
            except (OSError, ValueError) as error:  # a frame that passed its header check but does not decode
                self.damage.add(clip.shard, "bad_frame", f"clip {clip.meta['id']}: {error}")
                return None

        def batch(records):
            drawn[0] += 1
            if drawn[0] <= skip:
                return None
            examples = [made for made in map(example, records) if made is not None]
            if examples:
                last[0] = examples
            return sb.dataio.batch.PaddedBatch(examples or last[0])

        records = []
        for record in self._records(part):
            buffer.append(record)
            if len(buffer) >= self.shuffle_buffer and sizes:
                records = self._draw(buffer, sizes.pop(0), rng)
                made = batch(records)
                if made is not None:
                    yield made
        rng.shuffle(buffer)
        while sizes and buffer:
            size = sizes.pop(0)
            records, buffer = buffer[:size], buffer[size:]
            made = batch(records)
            if made is not None:
                yield made
        if sizes and records:  # clips were lost to damage: every process must still make the planned steps
            logger.warning(
                "%d batches of this epoch repeat clips already used (damaged clips left them short), so that "
                "every process makes the same number of steps",
                len(sizes),
            )
            for _ in sizes:
                made = batch(records)
                if made is not None:
                    yield made

    @staticmethod
    def _draw(buffer, size, rng):
        """``size`` records drawn at random from the buffer (and taken out of it)."""
        picked = []
        for _ in range(min(size, len(buffer))):
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            picked.append(buffer.pop())
        return picked


def draws_in_epoch(expected, seed, epoch, clip_id):
    """How many times a clip whose expected count per epoch is ``expected`` is used in ``epoch``: its whole
    part, plus one with the probability of its fraction (drawn from ``seed``, ``epoch`` and the clip's id, so
    that every process draws the same).

    Example
    -------
    >>> [draws_in_epoch(2.0, 0, 1, "a"), draws_in_epoch(0.0, 0, 1, "a")]
    [2, 0]
    >>> sum(draws_in_epoch(0.25, 0, epoch, "a") for epoch in range(4000)) / 4000
    0.25375
    """
    whole = int(expected)
    return whole + (random.Random(f"{seed}/{epoch}/{clip_id}").random() < expected - whole)


def round_robin_counts(batches, steps):
    """How many batches each worker has given after ``steps`` batches of a ``DataLoader`` that takes them in
    turn from workers holding ``batches`` each (a worker that has given all of its batches is passed over).

    Example
    -------
    >>> round_robin_counts([3, 1, 2], 5)
    [2, 1, 2]
    """
    counts = [0] * len(batches)
    done = 0
    while done < steps and any(c < b for c, b in zip(counts, batches)):
        for w, total in enumerate(batches):
            if done < steps and counts[w] < total:
                counts[w] += 1
                done += 1
    return counts


def _rank_and_world_size():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def plan_epoch(counts, world_size, num_workers, batch_size, epoch, seed):
    """Deals shards to processes and workers for one epoch, and sizes their batches.

    Shards go, in an order shuffled by ``(seed, epoch)``, largest first, to the process and then the worker
    holding the fewest clips; each worker splits its clips into batches of at most ``batch_size``, and
    processes that would make fewer steps than the others split some batches further, so that every process
    makes the same number of steps (distributed training needs it) and every clip is in one batch.

    Returns
    -------
    list
        Per process, per worker: ``{"shards": [shard index, ...], "batches": [size, ...]}``.

    Example
    -------
    >>> plan = plan_epoch([10, 10, 10, 3], world_size=2, num_workers=1, batch_size=8, epoch=0, seed=0)
    >>> [sum(sum(w["batches"]) for w in rank) for rank in plan], [sum(len(w["batches"]) for w in rank) for rank in plan]
    ([20, 13], [3, 3])
    """
    order = list(range(len(counts)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    order.sort(key=lambda i: -counts[i])  # stable: equal shards stay in the shuffled order
    ranks = [[{"shards": [], "clips": 0} for _ in range(num_workers)] for _ in range(world_size)]
    totals = [0] * world_size
    for index in order:
        rank = min(range(world_size), key=lambda r: totals[r])
        worker = min(ranks[rank], key=lambda w: w["clips"])
        worker["shards"].append(index)
        worker["clips"] += counts[index]
        totals[rank] += counts[index]
    steps = [[math.ceil(w["clips"] / batch_size) for w in workers] for workers in ranks]
    target = max(sum(s) for s in steps)
    if min(totals) < target:
        raise DataError(
            f"{len(counts)} training shards cannot give {world_size} processes the same number of steps "
            f"(one gets {min(totals)} clips, another {target} batches): write smaller shards (shard_megabytes)"
        )
    for workers, worker_steps in zip(ranks, steps):
        while sum(worker_steps) < target:  # more, smaller batches where a worker has clips to spare
            spare = max(range(len(workers)), key=lambda w: workers[w]["clips"] / max(1, worker_steps[w]))
            worker_steps[spare] += 1
    return [
        [{"shards": w["shards"], "batches": _even_sizes(w["clips"], n)} for w, n in zip(workers, worker_steps)]
        for workers, worker_steps in zip(ranks, steps)
    ]


def _even_sizes(clips, batches):
    """``clips`` split into ``batches`` sizes that differ by at most one."""
    if not batches:
        return []
    base, extra = divmod(clips, batches)
    return [base + (i < extra) for i in range(batches)]


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
        return decode_audio(_read_member(members, "audio.npy"), members["meta"]["samples"])

    items = [audio] + [label_pipeline(key, encoder) for key, encoder in label_encoders.items()]
    keys = ["id", "sig"] + [f"{key}_encoded" for key in label_encoders]
    if settings.get("frames"):

        @sb.utils.data_pipeline.takes("members")
        @sb.utils.data_pipeline.provides("frames", "crop_starts")
        def crops(members):
            names = sorted(name for name in members if name.startswith("crop."))
            pictures = _decode_images([_read_member(members, name) for name in names]).contiguous()
            starts = members["meta"]["crop_starts"]
            yield pictures.reshape(len(starts), -1, *pictures.shape[1:])
            yield torch.tensor(starts)

        items.append(crops)
        keys += ["frames", "crop_starts"]
    dataset = sb.dataio.dataset.DynamicItemDataset(data, dynamic_items=items, output_keys=keys)
    return dataset.filtered_sorted(sort_key="duration")


def _read_member(members, suffix):
    offset, size = members[suffix]
    with open(members["shard"], "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise DataError(f"shard {members['shard']} is cut short")
    return data


def main(argv=None):
    """``python -m speechbrain_datar.dataio.shards check <folder>``: verifies every shard (size, SHA-256,
    clips); exit status 1 when one is not whole."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("folder")
    parser.add_argument(
        "--prepared",
        default=None,
        help="the prepared folder the shards were written from (its train/valid/test.json): also checks that every "
        "clip's metadata is its manifest entry, as training and evaluation do",
    )
    args = parser.parse_args(argv)
    manifests = None
    if args.prepared:
        manifests = {s: os.path.join(args.prepared, f"{s}.json") for s in ("train", "valid", "test")}
        manifests = {s: p for s, p in manifests.items() if os.path.isfile(p)}
    problems = check_shards(args.folder, manifests)
    for name, problem in problems.items():
        print(f"{name}: {problem}")
    if not problems:
        print(f"all shards in {args.folder} are whole")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
