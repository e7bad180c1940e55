"""Writing shards: every clip of the prepared manifests decoded once (in worker processes) into tar shards, resumable after the last finished shard.

Part of ``speechbrain_datar.dataio.shards`` (the package documents the format).
"""

import contextlib
import io
import json
import logging
import math
import multiprocessing
import os
import random
import tarfile

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.crops import crop_frame_times, crop_starts, read_frames
from speechbrain_datar.dataio.frames import DEFAULT_FPS, FrameTransform, frame_times
from speechbrain_datar.dataio.manifest import read_manifest
from speechbrain_datar.dataio.problems import ClipProblem
from speechbrain_datar.dataio.shard_records import (
    record_digest,
)
from speechbrain_datar.dataio.shards.format import (
    INFO_FILE,
    JPEG_QUALITY,
    REPORT_FILE,
    _refuse_other_preparation,
    file_sha256,
    finished_shards,
    read_json_file,
    read_shard_info,
    shard_info,
)
from speechbrain_datar.errors import DataError

logger = logging.getLogger(__name__)


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
        """Appends one encoded clip's members to the shard being written."""
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
        """Bytes written to the current shard."""
        return self.tar.fileobj.tell()

    def finish(self, next_position, last):
        """Closes the current shard and writes its record (clips, size, SHA-256) beside it."""
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
    >>> from speechbrain_datar.dataio.shards import shard_settings
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
