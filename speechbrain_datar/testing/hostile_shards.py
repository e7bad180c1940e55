"""Runs one reader of a shard folder in a fresh process and prints one JSON line: the outcome (the ids read and
the damage reported, or the one-line error), the process's peak resident memory in MiB (torch included) and how
many warning lines it logged.

    python -m speechbrain_datar.testing.hostile_shards train|evaluate|check <shards folder> <manifest>

(the other splits' manifests are read from beside ``<manifest>``.)

``tests/unit/dataio/test_hostile_shards.py`` and ``benchmarks/hostile_inputs.py`` run it on the memory cases; the
``make``-like helpers here (``tamper``, ``write_members``, ...) damage shards the way the tests need.
"""

import io
import json
import logging
import os
import sys
import tarfile

import numpy as np

# ------------------------------------------------------------------------------- making damaged shards
LABELS = ["bark", "chirp"]


def make_shards(folder, n=4):
    """``n`` clips per split, one shard each; returns the manifests and the shards folder."""
    import soundfile

    from speechbrain_datar.dataio.shards import shard_settings, write_shards

    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    manifests = {}
    for split in ("train", "test"):
        entries = {}
        for i in range(n):
            clip = f"{split}{i}"
            path = os.path.join(folder, f"{clip}.wav")
            soundfile.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
            entries[clip] = {
                "path": path,
                "start": None,
                "stop": None,
                "duration": 0.5,
                "label": LABELS[i % 2],
            }
        manifests[split] = os.path.join(folder, f"{split}.json")
        with open(manifests[split], "w") as f:
            json.dump(entries, f)
    shards = os.path.join(folder, "shards")
    write_shards(manifests, shards, shard_settings(16000), progress=False)
    return manifests, shards


def members_of(path):
    """``{name: bytes}`` of every member of the tar file at ``path``."""
    with tarfile.open(path) as tar:
        return [(info, tar.extractfile(info).read() if info.isreg() else b"") for info in tar.getmembers()]


def write_members(path, members, record_path=None):
    """Writes a shard of ``members`` (``(TarInfo, bytes)``) and, as someone covering their tracks would, sets its
    record's size and SHA-256 to the new file's."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    if record_path:
        fix_record(path, record_path)


def fix_record(path, record_path, digest=True, **changes):
    """Rewrites a shard's record after its tar changed (size and, with ``digest``, SHA-256), with ``changes``."""
    from speechbrain_datar.dataio.shards import file_sha256

    with open(record_path) as f:
        record = json.load(f)
    record.update(bytes=os.path.getsize(path), **changes)
    if digest:
        record["sha256"] = file_sha256(path)
    with open(record_path, "w") as f:
        json.dump(record, f)


def npy(array):
    """The bytes of ``array`` as ``numpy.save`` writes them."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header_only(shape, descr="<f4"):
    """A ``.npy`` header that declares ``shape`` and no data after it."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64


def tamper(shards_folder, split, clip, edit_meta=None, audio=None, raw_json=None, rehash=True, replace=None):
    """Changes one clip's record in its shard: its metadata (``edit_meta(meta)``), its audio bytes, other members
    (``replace``: ``{suffix: function of the old bytes}``), or its JSON bytes as they are; its SHA-256 recomputed
    (``rehash``) so that only the content checks can find it."""
    path = os.path.join(shards_folder, f"{split}-000000.tar")
    members = members_of(path)
    from speechbrain_datar.dataio.shard_records import record_digest

    stems = {}
    for info, data in members:
        stem, suffix = info.name.split(".", 1)
        stems.setdefault(stem, {})[suffix] = data
    key = next(stem for stem, m in stems.items() if json.loads(m["json"])["id"] == clip)
    meta = json.loads(stems[key]["json"])
    content = {k: v for k, v in stems[key].items() if k != "json"}
    if audio is not None:
        content["audio.npy"] = audio
    for suffix, change in (replace or {}).items():
        content[suffix] = change(content[suffix])
    if edit_meta:
        edit_meta(meta)
    if rehash:
        meta["sha256"] = record_digest(content, meta)
    new_json = raw_json if raw_json is not None else json.dumps(meta).encode()
    out = []
    for info, data in members:
        stem, suffix = info.name.split(".", 1)
        if stem == key:
            data = new_json if suffix == "json" else content[suffix]
        out.append((info, data))
    write_members(path, out, os.path.join(shards_folder, f"{split}-000000.json"))


def compress_padded(path):
    """Gzips a shard in place and pads it to its size, its record's SHA-256 made to match."""
    import gzip

    with open(path, "rb") as f:
        packed = gzip.compress(f.read())
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(packed + b"\0" * (size - len(packed)))
    fix_record(path, path[:-4] + ".json")


def declare_huge_member(path, size=6 << 30):
    """Keeps a shard's first three members and declares the third (a clip's JSON) at ``size`` bytes, its data a
    hole of a sparse file; the record's size is edited to match (training reads no whole-shard digest)."""
    members = members_of(path)
    write_members(path, members[:3])
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        info = tarfile.TarInfo(members[2][0].name)
        info.size = size
        at = data.find(members[2][0].name.encode()) // 512 * 512
        data[at : at + 512] = info.tobuf(format=tarfile.USTAR_FORMAT)
        f.seek(0)
        f.write(data)
        f.truncate(at + 512 + size + 1024)
    fix_record(path, path[:-4] + ".json", digest=False)


# ------------------------------------------------------------------------------------- reading them
class _Counter(logging.Handler):
    """Keeps the warnings logged while it is attached."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        """Counts a logged line."""
        self.lines.append(record.getMessage())


def run(kind, folder, manifest):
    """The outcome of reading ``folder``'s split of ``manifest`` as training, evaluation or ``check`` does."""
    import speechbrain as sb

    from speechbrain_datar.dataio.shards import (
        DamageReport,
        ShardStream,
        check_shards,
        open_shard_folder,
        read_shard_info,
        shard_eval_dataset,
    )
    from speechbrain_datar.errors import DataError

    split = os.path.basename(manifest).split(".")[0]
    try:
        if kind == "check":
            return f"check: {check_shards(folder)}"
        settings = read_shard_info(os.path.join(folder, "shards.json"))["settings"]
        with open(manifest) as f:
            entries = json.load(f)
        encoder = sb.dataio.encoder.CategoricalEncoder()
        encoder.update_from_iterable(sorted({str(e["label"]) for e in entries.values()}))
        siblings = {s: os.path.join(os.path.dirname(manifest), f"{s}.json") for s in ("train", "valid", "test")}
        manifests = {s: path for s, path in siblings.items() if os.path.isfile(path)}
        shards = open_shard_folder(folder, manifests, settings)[split]
        report = os.path.join(folder, "..", "damage.jsonl")
        if kind == "train":
            stream = ShardStream(shards, {"label": encoder}, settings, 1.0, 2, entries=entries, damage_report=report)
            ids = sorted({i for batch in stream for i in batch.id})
        else:
            dataset = shard_eval_dataset(shards, manifest, {"label": encoder}, settings, report)
            ids = sorted(dataset[i]["id"] for i in range(len(dataset)))
        damage = [f"{os.path.basename(d['shard'])}: {d['reason']}" for d in DamageReport.read(report)]
        return f"{len(ids)} clips read; damage: {damage}"
    except DataError as error:
        return f"{type(error).__name__}: {error}"


def peak_resident_mib():
    """This process's own peak resident memory (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv):
    """Runs one reader on a shard folder and prints its outcome, peak memory and warnings as one JSON line."""
    kind, folder, manifest = argv
    counter = _Counter()
    logging.getLogger().addHandler(counter)
    outcome = run(kind, folder, manifest)
    warnings = " | ".join(counter.lines[:3])
    print(
        json.dumps(
            {
                "kind": kind,
                "outcome": f"{outcome}; warnings: {warnings}"[:2000],
                "peak_mib": round(peak_resident_mib(), 1),
                "warning_lines": len(counter.lines),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
