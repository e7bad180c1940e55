"""Data preparation for FSD50K (multi-label, 200 classes of the AudioSet ontology).

Reads the official ground truth, ``FSD50K.ground_truth/dev.csv`` (``fname,labels,mids,split``;
``split`` is ``train`` or ``val``), ``eval.csv`` (``fname,labels,mids``) and
``vocabulary.csv`` (no header: ``index,label,mid``), and the clips in
``FSD50K.dev_audio/`` and ``FSD50K.eval_audio/`` (``<fname>.wav``). ``labels`` and ``mids``
are quoted, comma-separated lists of the same length. A clip's labels are the vocabulary's
names of its MIDs. The official validation split is kept as the validation set. An MID that
is not in the vocabulary is counted as ``unknown_mid`` in the report; a clip is skipped only
when none of its MIDs is known (``no_known_label``). No label is dropped without a line in
``prepare_report.json``.

Authors
 * speechbrain-datar contributors
"""

import csv
import os

from speechbrain_datar.dataio.audio import CLIP_EXTENSIONS
from speechbrain_datar.dataio.labels import names_of_mids
from speechbrain_datar.dataio.prepare import PreparedData, check_audio, clip_job, open_annotations
from speechbrain_datar.dataio.report import SkipReport
from speechbrain_datar.errors import DataError, MissingDataError

GROUND_TRUTH = "FSD50K.ground_truth"


def read_vocabulary(path):
    """``{mid: label}`` from ``vocabulary.csv`` (``index,label,mid``, no header)."""
    if not os.path.isfile(path):
        raise MissingDataError(f"FSD50K vocabulary not found: {path}")
    vocabulary = {}
    with open_annotations(path) as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 3 or not row[0].strip().isdigit():
                raise DataError(f"{path}, line {number}: expected index,label,mid, got {row}")
            vocabulary[row[2].strip()] = row[1].strip()
    return vocabulary


def read_ground_truth(path, vocabulary, report, splits=None):
    """Rows ``(fname, [labels], split)`` of ``dev.csv`` or ``eval.csv`` (``split`` None for eval).

    Arguments
    ---------
    path : str
        The CSV file.
    vocabulary : dict
        ``{mid: label}``.
    report : SkipReport
        Receives unknown MIDs (the clip keeps its other labels), rows whose labels and MIDs
        disagree, and clips without a known label.
    splits : sequence or None
        The values ``split`` may take (``dev.csv``); ``None``: the file has no split column.
    """
    if not os.path.isfile(path):
        raise MissingDataError(f"FSD50K ground truth not found: {path}")
    rows = []
    with open_annotations(path) as f:
        reader = csv.DictReader(f)
        needed = {"fname", "labels", "mids"} | ({"split"} if splits else set())
        if not needed <= set(reader.fieldnames or ()):
            raise DataError(
                f"{path} does not look like FSD50K ground truth: columns {reader.fieldnames}, need {sorted(needed)}"
            )
        for number, row in enumerate(reader, start=2):
            fname = (row["fname"] or "").strip()
            mids = [mid.strip() for mid in (row["mids"] or "").split(",") if mid.strip()]
            names = [name.strip() for name in (row["labels"] or "").split(",") if name.strip()]
            split = (row.get("split") or "").strip() if splits else None
            if not fname or not mids or (splits and split not in splits):
                report.add("bad_row", f"line {number}: {dict(row)}")
                continue
            if len(names) != len(mids):
                report.add("labels_and_mids_disagree", f"line {number}: {len(names)} labels, {len(mids)} mids")
            labels = names_of_mids(fname, mids, vocabulary, report)
            if labels:
                rows.append((fname, labels, split))
    return rows


def prepare_fsd50k(
    data_folder,
    ground_truth_folder=None,
    dev_audio_folder=None,
    eval_audio_folder=None,
    extensions=CLIP_EXTENSIONS,
    min_seconds=0.05,
    silence_threshold=None,
    num_workers=4,
):
    """Reads FSD50K's ground truth and checks its clips.

    Arguments
    ---------
    data_folder : str
        Folder holding ``FSD50K.ground_truth/``, ``FSD50K.dev_audio/`` and ``FSD50K.eval_audio/``.
    ground_truth_folder, dev_audio_folder, eval_audio_folder : str or None
        Override those locations.
    extensions : sequence
        Extensions tried in order.
    min_seconds : float
        Shorter clips are skipped as ``too_short`` (FSD50K's shortest are 0.3 s).
    silence_threshold : float or None
        Clips whose peak is below this are skipped as ``silent`` (``None``: kept).
    num_workers : int
        Threads that open clips.

    Returns
    -------
    PreparedData
        Entries with ``labels`` (a list), the official ``val`` split as ``valid``.
    """
    if not os.path.isdir(data_folder):
        raise MissingDataError(f"FSD50K folder {data_folder!r} does not exist")
    truth = ground_truth_folder or os.path.join(data_folder, GROUND_TRUTH)
    folders = {
        "dev": dev_audio_folder or os.path.join(data_folder, "FSD50K.dev_audio"),
        "eval": eval_audio_folder or os.path.join(data_folder, "FSD50K.eval_audio"),
    }
    for folder in folders.values():
        if not os.path.isdir(folder):
            raise MissingDataError(f"FSD50K audio folder {folder!r} does not exist")
    vocabulary = read_vocabulary(os.path.join(truth, "vocabulary.csv"))
    csv_report = SkipReport("csv")
    dev = read_ground_truth(os.path.join(truth, "dev.csv"), vocabulary, csv_report, splits=("train", "val"))
    evaluation = read_ground_truth(os.path.join(truth, "eval.csv"), vocabulary, csv_report)
    csv_report.kept(len(dev) + len(evaluation))
    jobs = {"train": [], "valid": [], "test": []}
    for fname, labels, split in dev:
        jobs["train" if split == "train" else "valid"].append(
            clip_job(fname, folders["dev"], fname, {"start": None, "stop": None, "labels": labels}, extensions)
        )
    for fname, labels, _ in evaluation:
        jobs["test"].append(
            clip_job(fname, folders["eval"], fname, {"start": None, "stop": None, "labels": labels}, extensions)
        )
    reports = {split: SkipReport(split) for split in jobs}
    entries = {
        split: check_audio(
            jobs[split], reports[split], min_seconds, silence_threshold, num_workers, desc=f"checking {split} clips"
        )
        for split in jobs
    }
    if not entries["train"]:
        raise DataError(f"no usable training clip: {reports['train'].summary()}")
    return PreparedData(
        entries["train"],
        entries["test"],
        [csv_report, reports["valid"], reports["train"], reports["test"]],
        label_keys=("labels",),
        valid=entries["valid"],
        extra_files={"class_names.json": sorted(set(vocabulary.values()))},
        inputs=[truth, folders["dev"], folders["eval"]],
    )
