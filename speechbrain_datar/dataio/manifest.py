"""Manifests (SpeechBrain JSON), deterministic splits and "already prepared" checks (options and inputs)."""

import hashlib
import json
import logging
import math
import os
import random

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"


def write_manifest(entries, path):
    """Writes ``{id: entry}`` entries as a SpeechBrain JSON manifest."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=2)
    logger.info("wrote %d entries to %s", len(entries), path)


def read_manifest(path):
    """The entries of a JSON manifest, as they were written.

    SpeechBrain's ``load_data_json`` formats every string with ``str.format``: an id, a label or a folder with
    braces in it (``x{0}``, ``{a: b}``, ``data {v2}``) would fail or change there. This reads them unchanged.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.json")
    >>> write_manifest({"x{0}": {"path": "/data {v2}/a.wav", "label": "{a: b}"}}, path)
    >>> read_manifest(path)["x{0}"]["label"]
    '{a: b}'
    """
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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
        label = entries[key][label_key]
        # multi-label entries (a list) are stratified by their first label, so every class still reaches valid
        by_label.setdefault(label[0] if isinstance(label, list) else label, []).append(key)
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


def fingerprint(paths, exclude=()):
    """A digest per path: of a file's content, or of a folder's files (names, sizes, modification times).

    Cheap enough to run before every training run: folders are listed, not read.
    Folders in ``exclude`` (the preparation's own outputs) are left out.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "a.csv"), "w") as f:
    ...     _ = f.write("x")
    >>> before = fingerprint([folder])
    >>> os.remove(os.path.join(folder, "a.csv"))
    >>> fingerprint([folder]) == before
    False
    """
    excluded = {os.path.abspath(p) for p in exclude}
    digests = {}
    for path in sorted({os.path.abspath(p) for p in paths}):
        digest = hashlib.sha256()
        if os.path.isfile(path):
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        elif os.path.isdir(path):
            for folder, subfolders, files in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if os.path.join(folder, d) not in excluded)
                for name in sorted(files):
                    try:
                        info = os.stat(os.path.join(folder, name))
                    except OSError:  # a dangling or looping symbolic link: the link itself is what there is
                        try:
                            info = os.lstat(os.path.join(folder, name))
                        except OSError:
                            continue  # removed while the folder was listed
                    digest.update(
                        f"{os.path.relpath(os.path.join(folder, name), path)}|{info.st_size}|"
                        f"{info.st_mtime_ns}\n".encode()
                    )
        else:
            digest.update(b"absent")
        digests[path] = digest.hexdigest()
    return digests


def already_prepared(save_folder, options):
    """True if ``save_folder`` holds every output recorded by ``mark_prepared``, made with the same ``options``
    from inputs (annotation files, clip folders) that have not changed since."""
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if not os.path.isfile(options_path):
        return False
    with open(options_path) as f:
        recorded = json.load(f)
    if recorded.get("options") != json.loads(json.dumps(options)):
        return False
    if not all(os.path.isfile(os.path.join(save_folder, name)) for name in recorded.get("outputs", [])):
        return False
    inputs = recorded.get("inputs", {})
    return fingerprint(inputs, exclude=_own_folders(save_folder)) == inputs


def _own_folders(save_folder):
    """The preparation's folder and the experiment folder around it: never part of the inputs."""
    save_folder = os.path.abspath(save_folder)
    return save_folder, os.path.dirname(save_folder)


def clear_prepared(save_folder):
    """Forgets that ``save_folder`` was prepared (before it is prepared again)."""
    path = os.path.join(save_folder, OPTIONS_FILE)
    if os.path.isfile(path):
        os.remove(path)


def mark_prepared(save_folder, options, outputs, inputs=()):
    """Records the options and the inputs' fingerprints the ``outputs`` (file names) in ``save_folder`` were made with."""
    record = {"options": options, "outputs": sorted(outputs), "inputs": fingerprint(inputs, _own_folders(save_folder))}
    with open(os.path.join(save_folder, OPTIONS_FILE), "w") as f:
        json.dump(record, f, indent=2)
