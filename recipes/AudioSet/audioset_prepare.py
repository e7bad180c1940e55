"""Data preparation for AudioSet (multi-label, 527 classes).

Reads the official segment lists, ``balanced_train_segments.csv``,
``unbalanced_train_segments.csv`` and ``eval_segments.csv``: comment lines start with
``#``, then ``YTID, start_seconds, end_seconds, "positive_labels"`` with the labels a quoted,
comma-separated list of MIDs. ``class_labels_indices.csv`` (``index,mid,display_name``,
display names quoted when they hold commas) names the classes. Clips are audio files, or
the videos themselves (the video decoder reads their sound), named ``Y<YTID>.<ext>`` by
default (``filename_pattern`` with ``ytid``, ``start`` and ``end``), each the 10 s segment
(``trimmed=False``: whole videos, read from ``start`` to ``end``). A clip's labels are the
display names of its MIDs. An MID that is not in ``class_labels_indices.csv`` is counted as
``unknown_mid`` (the clip keeps its other labels); a clip left without a label is skipped as
``no_known_label``; a missing clip as ``missing``. Validation is carved from training.

Authors
 * speechbrain-datar contributors
"""

import csv
import os

from speechbrain_datar.dataio.audio import CLIP_EXTENSIONS
from speechbrain_datar.dataio.cells import seconds
from speechbrain_datar.dataio.labels import names_of_mids
from speechbrain_datar.dataio.prepare import PreparedData, check_audio, clip_job, dataset_folders, open_annotations
from speechbrain_datar.dataio.report import SkipReport
from speechbrain_datar.errors import DataError, MissingDataError

SEGMENT_FILES = {
    "balanced": "balanced_train_segments.csv",
    "unbalanced": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}


def read_class_labels(path):
    """``{mid: display_name}`` from ``class_labels_indices.csv``."""
    if not os.path.isfile(path):
        raise MissingDataError(f"AudioSet class list not found: {path}")
    with open_annotations(path) as f:
        reader = csv.DictReader(f)
        if not {"index", "mid", "display_name"} <= set(reader.fieldnames or ()):
            raise DataError(f"{path} does not look like class_labels_indices.csv: columns {reader.fieldnames}")
        return {row["mid"].strip(): row["display_name"].strip() for row in reader}


def read_segments(path, classes, report):
    """Rows ``(ytid, start, end, [labels])`` of a segment list.

    Arguments
    ---------
    path : str
        ``*_segments.csv``.
    classes : dict
        ``{mid: display_name}``.
    report : SkipReport
        Receives malformed rows, unknown MIDs, clips without a known label and repeated segments.
    """
    if not os.path.isfile(path):
        raise MissingDataError(f"AudioSet segment list not found: {path}")
    rows, seen = [], set()
    with open_annotations(path) as f:
        lines = (line for line in f if not line.lstrip().startswith("#"))
        for number, row in enumerate(csv.reader(lines, skipinitialspace=True), start=1):
            if not row:
                continue
            if len(row) != 4:
                report.add("bad_row", f"row {number}: {row} ({len(row)} columns instead of 4)")
                continue
            ytid, start, end, mids = (cell.strip() for cell in row)
            try:
                start, end = seconds(start), seconds(end)
            except ValueError as error:
                report.add("bad_row", f"row {number}: {row} ({error})")
                continue
            if not ytid or not 0 <= start < end:
                report.add("bad_row", f"row {number}: {row}")
                continue
            if (ytid, start) in seen:
                report.add("duplicate", f"{ytid} {start}")
                continue
            seen.add((ytid, start))
            labels = names_of_mids(ytid, [m.strip() for m in mids.split(",") if m.strip()], classes, report)
            if labels:
                rows.append((ytid, start, end, labels))
    return rows


def prepare_audioset(
    data_folder,
    train_sets=("balanced",),
    audio_folder=None,
    filename_pattern="Y{ytid}",
    trimmed=True,
    extensions=CLIP_EXTENSIONS,
    min_seconds=0.05,
    silence_threshold=None,
    num_workers=4,
    need_video=False,
):
    """Reads AudioSet's segment lists and checks the clips they name.

    Arguments
    ---------
    data_folder : str
        Folder holding the segment lists, ``class_labels_indices.csv`` and the clips (in
        ``audio/`` or directly).
    train_sets : sequence
        ``balanced`` and/or ``unbalanced``.
    audio_folder : str or None
        Overrides the clips' folder.
    filename_pattern : str
        Clip file name without extension, formatted with ``ytid``, ``start`` and ``end`` (seconds).
    trimmed : bool
        Clips are the 10 s segments; ``False``: whole videos, read from ``start`` to ``end``.
    extensions, min_seconds, silence_threshold, num_workers, need_video
        As for ``prepare_vggsound``.

    Returns
    -------
    PreparedData
        Entries with ``labels`` (a list of display names).
    """
    unknown = [name for name in train_sets if name not in ("balanced", "unbalanced")]
    if unknown or not train_sets:
        raise DataError(f"train_sets must name balanced and/or unbalanced, got {list(train_sets)}")
    (audio_folder,) = dataset_folders(data_folder, "folder with the segment lists and the clips", audio=audio_folder)
    classes = read_class_labels(os.path.join(data_folder, "class_labels_indices.csv"))
    csv_report = SkipReport("csv")
    lists = {"train": [SEGMENT_FILES[name] for name in train_sets], "test": [SEGMENT_FILES["eval"]]}
    reports = {split: SkipReport(split) for split in lists}
    entries = {}
    checks = dict(
        min_seconds=min_seconds, silence_threshold=silence_threshold, num_workers=num_workers, need_video=need_video
    )
    for split, files in lists.items():
        jobs = []
        for name in files:
            rows = read_segments(os.path.join(data_folder, name), classes, csv_report)
            csv_report.kept(len(rows))
            for ytid, start, end, labels in rows:
                stem = filename_pattern.format(ytid=ytid, start=start, end=end)
                span = {"start": None, "stop": None} if trimmed else {"start": start, "stop": end}
                jobs.append(clip_job(f"{ytid}_{start:g}", audio_folder, stem, dict(span, labels=labels), extensions))
        entries[split] = check_audio(jobs, reports[split], **checks)
    if not entries["train"]:
        raise DataError(
            f"no usable training clip: {reports['train'].summary()}; looked for files like "
            f"{os.path.join(audio_folder, filename_pattern)}{{{','.join(extensions)}}}"
        )
    return PreparedData(
        entries["train"],
        entries["test"],
        [csv_report, reports["train"], reports["test"]],
        label_keys=("labels",),
        extra_files={"class_names.json": sorted(set(classes.values()))},
        inputs=[os.path.join(data_folder, f) for f in ["class_labels_indices.csv", *lists["train"], *lists["test"]]]
        + [audio_folder],
    )
