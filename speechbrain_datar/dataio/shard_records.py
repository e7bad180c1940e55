"""One clip's record in a tar shard: what it holds, its digest, and the checks every reader makes before it uses it.

A record is a run of tar members that share a stem (the clip's position, nine digits): ``<n>.json`` first (the
clip's metadata: its id, the number of samples stored, its SHA-256, frame times), then ``<n>.audio.npy``
(float32, one dimension), then its frames (``<n>.frame.<k>.jpg`` for training, ``<n>.crop.<k>.png`` for
evaluation). The SHA-256 covers the metadata (labels included) and every member's name and bytes.

Shards come from shared storage and can be damaged or made by someone else, so ``read_records`` trusts nothing
it reads: every member is a regular file with a name of the format and a size within a cap fixed before it is
read (the JSON at most ``MAX_JSON_BYTES``, the audio at most what the clip's span can hold, images at most
``MAX_IMAGE_BYTES``); the JSON is parsed without duplicate keys, non-finite numbers, huge integers or deep
nesting; the ``.npy`` header's dtype and shape are checked against the member's size and the stored samples
before an array is made; non-finite audio is refused. A record that fails is a ``DamagedRecord`` with a short
``reason``; a shard whose tar structure breaks raises ``tarfile.TarError`` where the damage starts. Compressed
shards are refused (offsets into them mean nothing), members too large are skipped by seeking, and no list of
the members read is kept, so a shard of a million members costs what one member costs.
"""

import ast
import hashlib
import io
import json
import math
import re
import tarfile
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from speechbrain_datar.dataio.strict_json import MAX_JSON_BYTES, parse_json

SHARDS_FORMAT = 2
MAX_IMAGE_BYTES = 16 << 20
#: No member is read beyond this (an hour of 16 kHz float32 audio is 230 MB).
MAX_MEMBER_BYTES = 512 << 20
#: A stored clip may hold this many seconds more than its span (rounding of resampled segments).
SPAN_SLACK_SECONDS = 1.0
#: Damaged records reported by name per shard before the rest are only counted.
MAX_REPORTED = 20
MEMBER_NAME = re.compile(r"^(\d{9})\.(json|audio\.npy|frame\.\d{5}\.jpg|crop\.\d{5}\.png)$")
#: Pixels a stored frame may have (frames are stored at a short side near the model's frame size).
MAX_FRAME_PIXELS = 4096 * 4096
_MISSING = object()


class StoredClip(NamedTuple):
    """A record that passed every check: its metadata, members (``{suffix: bytes}``), their ``(offset, size)`` in
    the shard, its decoded audio, and the shard it was read from."""

    meta: dict
    members: dict
    offsets: dict
    audio: torch.Tensor
    shard: str = ""


class DamagedRecord(ValueError):
    """One clip of a shard is damaged (``reason``: a short code for reports); the records after it can still be
    read.

    Example
    -------
    >>> DamagedRecord("non_finite", "record 000000001 (a): audio is not finite").reason
    'non_finite'
    """

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def record_digest(members, meta):
    """SHA-256 over a record's metadata (all but its ``sha256``, keys sorted) and members (name and bytes, in name
    order): a changed label or a damaged clip is found when it is read, not trained on.

    Example
    -------
    >>> a = record_digest({"audio.npy": b"x"}, {"id": "a", "label": "dog", "sha256": "ignored"})
    >>> a == record_digest({"audio.npy": b"x"}, {"label": "dog", "id": "a"})
    True
    >>> a == record_digest({"audio.npy": b"x"}, {"id": "a", "label": "cat"})
    False
    """
    digest = hashlib.sha256()
    described = {key: value for key, value in meta.items() if key != "sha256"}
    digest.update(json.dumps(described, sort_keys=True).encode() + b"\0")
    for name in sorted(members):
        digest.update(name.encode() + b"\0" + len(members[name]).to_bytes(8, "little"))
        digest.update(members[name])
    return digest.hexdigest()


def npy_header(data):
    """``(dtype, shape, header bytes)`` of ``.npy`` bytes, read without making an array (``ValueError`` if it is
    not a ``.npy`` header numpy would read without pickles).

    Example
    -------
    >>> buffer = io.BytesIO(); np.save(buffer, np.zeros(3, dtype=np.float32))
    >>> npy_header(buffer.getvalue())[:2]
    (dtype('float32'), (3,))
    """
    stream = io.BytesIO(data[:4096])
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f".npy version {version}")
    length_size = 2 if version == (1, 0) else 4
    length = int.from_bytes(data[8 : 8 + length_size], "little")
    start = 8 + length_size
    if length > 4000 or start + length > len(data):
        raise ValueError(f".npy header of {length} bytes")
    header = ast.literal_eval(data[start : start + length].decode("latin1"))
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ValueError("not a .npy header")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and 0 <= n < 2**40 for n in shape):
        raise ValueError(f".npy shape {shape!r}")
    if not isinstance(header["descr"], str):
        raise ValueError(f".npy dtype {header['descr']!r}")
    return np.dtype(header["descr"]), shape, start + length


def decode_audio(data, samples=None):
    """The stored waveform of an ``audio.npy`` member, float32 ``[samples]``: ``DamagedRecord`` unless it is
    float32, one-dimensional, of exactly ``samples`` (when given) and its bytes' length, and finite.

    Example
    -------
    >>> buffer = io.BytesIO(); np.save(buffer, np.ones(4, dtype=np.float32))
    >>> decode_audio(buffer.getvalue(), 4).tolist()
    [1.0, 1.0, 1.0, 1.0]
    >>> buffer = io.BytesIO(); np.save(buffer, np.array([1.0, np.nan], dtype=np.float32))
    >>> decode_audio(buffer.getvalue())
    Traceback (most recent call last):
    ...
    speechbrain_datar.dataio.shard_records.DamagedRecord: stored audio is not finite (NaN or infinity)
    """
    try:
        dtype, shape, offset = npy_header(data)
    except (ValueError, SyntaxError, TypeError, MemoryError) as error:
        raise DamagedRecord("bad_audio", f"stored audio is not a float32 .npy ({error})") from None
    if dtype != np.dtype("<f4") or len(shape) != 1:
        raise DamagedRecord("bad_audio", f"stored audio has dtype {dtype} and shape {shape}, not float32 [samples]")
    if samples is not None and shape[0] != samples:
        raise DamagedRecord("bad_audio", f"stored audio has {shape[0]} samples, its record says {samples}")
    if len(data) != offset + 4 * shape[0]:
        raise DamagedRecord("bad_audio", f"stored audio of {shape[0]} samples takes {len(data) - offset} bytes")
    array = np.frombuffer(data, dtype="<f4", count=shape[0], offset=offset)
    if not np.isfinite(array).all():
        raise DamagedRecord("non_finite", "stored audio is not finite (NaN or infinity)")
    return torch.from_numpy(array.copy())


class RecordLimits:
    """What a reader allows one record: the clips it expects (the manifest's entries: a record of another clip is
    damage, and a clip's span bounds its stored samples), the sample rate, and the frames.

    Arguments
    ---------
    sample_rate : int
        The shards' rate.
    entries : dict or None
        The split's manifest entries (``None``: any id; samples bounded by ``MAX_MEMBER_BYTES`` alone).
    frames : dict or None
        The shards' frame settings (``None``: audio only).
    """

    def __init__(self, sample_rate, entries=None, frames=None):
        self.sample_rate, self.entries, self.frames = int(sample_rate), entries, frames

    def max_samples(self, clip_id):
        """How many samples the clip's span can hold."""
        bound = (MAX_MEMBER_BYTES - 256) // 4
        entry = (self.entries or {}).get(clip_id)
        if entry is None:
            return bound
        start, stop = entry.get("start") or 0.0, entry.get("stop")
        span = (stop if stop is not None else entry["duration"]) - start
        return min(bound, math.ceil((max(0.0, span) + SPAN_SLACK_SECONDS) * self.sample_rate))

    def member_limit(self, suffix, meta):
        """The most bytes member ``suffix`` of the record ``meta`` may have."""
        if suffix == "audio.npy":
            return 256 + 4 * self.max_samples(meta["id"])
        return MAX_IMAGE_BYTES

    def check_meta(self, key, meta):
        """``DamagedRecord`` unless ``meta`` is an object with an id this reader expects, its samples within the
        span and a SHA-256, and frames' lists of bounded length."""
        if not isinstance(meta, dict):
            raise DamagedRecord("bad_json", f"record {key}: its JSON is a {type(meta).__name__}, not an object")
        clip_id = meta.get("id")
        if not isinstance(clip_id, str) or not clip_id or len(clip_id) > 1000:
            raise DamagedRecord("bad_json", f"record {key}: no clip id")
        if self.entries is not None and clip_id not in self.entries:
            raise DamagedRecord("unknown_clip", f"record {key}: clip {clip_id[:100]!r} is not in the manifest")
        duration = meta.get("duration")
        if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not 0 < duration < 1e7:
            raise DamagedRecord("bad_json", f"record {key} ({clip_id}): duration {str(duration)[:30]!r}")
        samples = meta.get("samples")
        if not isinstance(samples, int) or isinstance(samples, bool) or not 0 < samples <= self.max_samples(clip_id):
            raise DamagedRecord("bad_json", f"record {key} ({clip_id}): {samples!r} samples for its span")
        if not isinstance(meta.get("sha256"), str):
            raise DamagedRecord("bad_json", f"record {key} ({clip_id}): no SHA-256")
        for name in ("frame_times", "crop_starts"):
            values = meta.get(name)
            if values is not None and (not isinstance(values, list) or len(values) > 100_000):
                raise DamagedRecord("bad_json", f"record {key} ({clip_id}): {name} is not a list of times")
        if self.entries is not None:
            entry = self.entries[clip_id]
            differs = [k for k, v in entry.items() if k not in ("path", "frames_folder") and meta.get(k, _MISSING) != v]
            if differs:
                raise DamagedRecord("manifest_differs", f"record {key} ({clip_id}): {differs} differ from the manifest")

    def expected_frames(self, meta):
        """How many frame members the record must hold."""
        if not self.frames:
            return 0
        if "frame_times" in meta:
            return len(meta["frame_times"])
        return len(meta.get("crop_starts") or []) * self.frames["n_frames"]


def image_problem(data, fmt):
    """Why stored image bytes are not a frame (another format, or more than ``MAX_FRAME_PIXELS``), from the header
    alone, or ``None``.

    Example
    -------
    >>> image_problem(b"not an image", "PNG")
    'is not an image'
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != fmt:
                return f"is {image.format}, not {fmt}"
            if image.width * image.height > MAX_FRAME_PIXELS:
                return f"declares {image.width} x {image.height} pixels"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return "is not an image"
    return None


def _read_member(tar, member, limit):
    """A regular member's bytes, at most ``limit`` of them (``None`` when it is larger: not read)."""
    if member.size > limit:
        return None
    data = tar.extractfile(member).read()
    if len(data) != member.size:
        raise tarfile.ReadError(f"member {member.name} is cut short")
    return data


def read_records(path, limits, max_members=None):
    """The records of a shard, in order: a ``StoredClip``, or a ``DamagedRecord`` in place of a damaged clip.

    ``max_members``: members read at most (the rest of the shard is then damage: ``tarfile.ReadError``).
    A member outside any record (a stray name, a link, a directory) is a ``DamagedRecord`` of its own.
    """
    # "r:": uncompressed only, and members' data are skipped by seeking (a member declared at 6 GiB costs nothing)
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
        record, count = None, 0
        while True:
            member = tar.next()
            tar.members = []  # a stream keeps no list of what it read: a million members cost one
            if member is None:
                break
            count += 1
            if max_members is not None and count > max_members:
                raise tarfile.ReadError(f"more than {max_members} members for the clips its record lists")
            match = MEMBER_NAME.match(member.name)
            stem = match.group(1) if match else None
            if record is not None and stem != record.key:
                yield record.finish(limits)
                record = None
            if match is None or not member.isreg():
                kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                reason = f"{kind}" if match else f"a name outside the format ({member.name[:60]!r})"
                yield DamagedRecord("stray_member", f"member {member.name[:60]!r}: {reason}")
                continue
            if record is None:
                record = _Record(stem, path)
            record.add(tar, member, match.group(2), limits)
        if record is not None:
            yield record.finish(limits)


class _Record:
    """A record being read: its metadata first, then members within their limits."""

    def __init__(self, key, shard=""):
        self.key, self.meta, self.members, self.offsets, self.damage = key, None, {}, {}, None
        self.shard = shard

    def add(self, tar, member, suffix, limits):
        """Reads one member of the record (within its limit), or notes why the record is damaged."""
        if self.damage is not None:
            return
        if suffix == "json":
            if self.meta is not None:
                self.damage = DamagedRecord("bad_json", f"record {self.key}: two JSON members")
                return
            data = _read_member(tar, member, MAX_JSON_BYTES)
            try:
                if data is None:
                    raise ValueError(f"{member.size} bytes of JSON")
                self.meta = parse_json(data)
                limits.check_meta(self.key, self.meta)
            except DamagedRecord as damage:
                self.damage = damage
            except (ValueError, RecursionError, UnicodeDecodeError) as error:
                self.damage = DamagedRecord("bad_json", f"record {self.key}: its JSON is unreadable ({error})")
            return
        if self.meta is None:
            self.damage = DamagedRecord("bad_record", f"record {self.key}: {suffix} before its JSON")
            return
        if suffix in self.members:
            self.damage = DamagedRecord("bad_record", f"record {self.key}: two {suffix} members")
            return
        limit = limits.member_limit(suffix, self.meta)
        data = _read_member(tar, member, limit)
        if data is None:
            self.damage = DamagedRecord(
                "too_large", f"record {self.key}: {suffix} of {member.size} bytes (at most {limit})"
            )
            return
        if suffix != "audio.npy":
            problem = image_problem(data, "JPEG" if suffix.endswith(".jpg") else "PNG")
            if problem:
                self.damage = DamagedRecord("bad_frame", f"record {self.key}: {suffix} {problem}")
                return
        self.members[suffix] = data
        self.offsets[suffix] = (member.offset_data, member.size)

    def finish(self, limits):
        """The record, checked whole: a ``StoredClip``, or the ``DamagedRecord`` that says what is wrong."""
        if self.damage is not None:
            return self.damage
        clip = f"record {self.key} ({self.meta['id'] if self.meta else '?'})"
        if self.meta is None or "audio.npy" not in self.members:
            return DamagedRecord("incomplete", f"{clip} is incomplete")
        frames = sum(name.startswith(("frame.", "crop.")) for name in self.members)
        if frames != limits.expected_frames(self.meta):
            return DamagedRecord("incomplete", f"{clip}: {frames} frames, {limits.expected_frames(self.meta)} expected")
        if self.meta["sha256"] != record_digest(self.members, self.meta):
            return DamagedRecord("digest", f"{clip} differs from what was written")
        try:
            audio = decode_audio(self.members["audio.npy"], self.meta["samples"])
        except DamagedRecord as damage:
            return DamagedRecord(damage.reason, f"{clip}: {damage}")
        return StoredClip(self.meta, self.members, self.offsets, audio, self.shard)
