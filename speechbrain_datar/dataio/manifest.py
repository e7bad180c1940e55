"""Manifests (SpeechBrain JSON), deterministic splits and "already prepared" checks."""

import json
import logging
import math
import os
import random

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"


def write_manifest(entries, path):
    """Writes ``{id: {...}}`` entries as a SpeechBrain JSON manifest."""
    with open(path, "w") as f:
        json.dump(entries, f, indent=2)
    logger.info("wrote %d entries to %s", len(entries), path)


def stratified_split(entries, ratio, seed=1234, label_key="label"):
    """Moves a deterministic ``ratio`` of each label's entries out of ``entries``.

    Every label keeps at least one entry on the training side.

    Returns
    -------
    kept, carved : dict, dict

    Example
    -------
    >>> entries = {f"c{i}": {"label": "a" if i < 10 else "b"} for i in range(14)}
    >>> kept, carved = stratified_split(entries, 0.2)
    >>> len(kept), len(carved), sorted({e["label"] for e in carved.values()})
    (11, 3, ['a', 'b'])
    """
    by_label = {}
    for key in sorted(entries):
        by_label.setdefault(entries[key][label_key], []).append(key)
    rng = random.Random(seed)
    carved_keys = set()
    for label in sorted(by_label):
        keys = by_label[label]
        rng.shuffle(keys)
        n = min(len(keys) - 1, int(math.ceil(ratio * len(keys))))
        carved_keys.update(keys[: max(n, 0)])
    kept = {k: v for k, v in entries.items() if k not in carved_keys}
    carved = {k: v for k, v in entries.items() if k in carved_keys}
    return kept, carved


def already_prepared(save_folder, options):
    """True if ``save_folder`` holds every output recorded by ``mark_prepared`` with the same ``options``."""
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if not os.path.isfile(options_path):
        return False
    with open(options_path) as f:
        recorded = json.load(f)
    if recorded.get("options") != json.loads(json.dumps(options)):
        return False
    return all(os.path.isfile(os.path.join(save_folder, name)) for name in recorded.get("outputs", []))


def mark_prepared(save_folder, options, outputs):
    """Records the options the ``outputs`` (file names) in ``save_folder`` were made with."""
    with open(os.path.join(save_folder, OPTIONS_FILE), "w") as f:
        json.dump({"options": options, "outputs": sorted(outputs)}, f, indent=2)
