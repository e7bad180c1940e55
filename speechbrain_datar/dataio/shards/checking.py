"""Checking a shard folder: every shard's size, SHA-256 and clips, and (given the manifests) its metadata.

Part of ``speechbrain_datar.dataio.shards`` (the package documents the format).
"""

import os

from speechbrain_datar.dataio.manifest import read_manifest
from speechbrain_datar.dataio.shard_records import (
    RecordLimits,
)
from speechbrain_datar.dataio.shards.format import (
    INFO_FILE,
    SHARD_RECORD_NAME,
    _record_problems,
    _refuse_other_preparation,
    read_shard_info,
    shard_info,
    shard_problem,
    shard_record,
)
from speechbrain_datar.errors import DataError


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
