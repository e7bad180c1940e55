"""Runs one reader of a shard folder in a fresh process and prints one JSON line: the outcome (the ids read and
the damage reported, or the one-line error), the process's peak resident memory in MiB (torch included) and how
many warning lines it logged.

    python tests/hostile_shards.py train|evaluate|check <shards folder> <manifest>

(the other splits' manifests are read from beside ``<manifest>``.)

``tests/unit/dataio/test_hostile_shards.py`` and ``benchmarks/hostile_inputs.py`` run it on the memory cases.
"""

import json
import logging
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
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
    sys.path.insert(0, ROOT)
    main(sys.argv[1:])
