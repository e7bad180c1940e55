"""Data preparation for Kinetics-Sounds.

Reads the official Kinetics-400 annotation CSVs (``train.csv``, ``validate.csv``;
columns ``label, youtube_id, time_start, time_end, split``, extra columns
ignored) and a folder of audio the user extracted from the clips
(``<id>_<start:06d>_<end:06d>.wav|flac|ogg`` by default). Keeps the classes of
``kinetics_sounds_classes.txt``; Kinetics' validation set is the test set, as in
the paper (which reports 22,914 train and 1,585 test clips). The outputs are
those of the VGGSound preparation.

Authors
 * speechbrain-datar contributors
"""

import csv
import logging
import os

from speechbrain_datar.dataio.audio import CLIP_EXTENSIONS
from speechbrain_datar.dataio.cells import seconds
from speechbrain_datar.dataio.prepare import PreparedData, check_audio, clip_job, dataset_folders, open_annotations
from speechbrain_datar.dataio.report import SkipReport
from speechbrain_datar.errors import DataError, MissingDataError

logger = logging.getLogger(__name__)

CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kinetics_sounds_classes.txt")
REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def read_class_list(path=CLASSES_FILE):
    """Class names, one a line; ``#`` starts a comment."""
    with open_annotations(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def read_kinetics_csv(path, classes, report):
    """Rows ``(label, youtube_id, start, end)`` of ``classes``; counts the rest.

    Returns
    -------
    rows : list
    other : int
        Rows of classes outside the list.
    """
    if not os.path.isfile(path):
        raise MissingDataError(f"Kinetics annotation file not found: {path}")
    rows, other = [], 0
    with open_annotations(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path} does not look like a Kinetics-400 annotation file: it has columns "
                f"{reader.fieldnames}, missing {missing}"
            )
        for number, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip()
            if label not in classes:
                other += 1
                continue
            try:
                start, end = int(seconds(row["time_start"])), int(seconds(row["time_end"]))
            except ValueError:
                report.add("bad_row", f"line {number}: {row}")
                continue
            if not 0 <= start < end:
                report.add("bad_row", f"line {number}: time_start {start}, time_end {end}")
                continue
            rows.append((label, row["youtube_id"].strip(), start, end))
    return rows, other


def prepare_kinetics_sounds(
    data_folder,
    annotation_folder=None,
    audio_folder=None,
    classes_file=CLASSES_FILE,
    filename_pattern="{ytid}_{start:06d}_{end:06d}",
    extensions=CLIP_EXTENSIONS,
    min_seconds=0.05,
    silence_threshold=1e-4,
    num_workers=4,
    need_video=False,
):
    """Reads the Kinetics-400 annotations of the Kinetics-Sounds classes and checks their clips.

    ``annotation_folder`` defaults to ``data_folder/annotations`` (or ``data_folder``),
    ``audio_folder`` to ``data_folder/audio`` (or ``data_folder``); ``classes_file``
    lists the classes kept. Other arguments are those of ``prepare_vggsound``.

    Returns
    -------
    PreparedData
    """
    annotation_folder, audio_folder = dataset_folders(
        data_folder, "folder with the annotations and audio", annotations=annotation_folder, audio=audio_folder
    )
    classes = read_class_list(classes_file)
    csv_report = SkipReport("csv")
    reports, entries, seen_classes, other_rows = {}, {}, set(), 0
    checks = dict(
        min_seconds=min_seconds, silence_threshold=silence_threshold, num_workers=num_workers, need_video=need_video
    )
    for split, name in (("train", "train.csv"), ("test", "validate.csv")):
        rows, other = read_kinetics_csv(os.path.join(annotation_folder, name), set(classes), csv_report)
        other_rows += other
        csv_report.kept(len(rows))
        jobs = []
        for label, ytid, start, end in rows:
            seen_classes.add(label)
            stem = filename_pattern.format(ytid=ytid, start=start, end=end)
            jobs.append(clip_job(stem, audio_folder, stem, {"start": None, "stop": None, "label": label}, extensions))
        reports[split] = SkipReport(split)
        entries[split] = check_audio(jobs, reports[split], **checks)
    absent = [c for c in classes if c not in seen_classes]
    if absent:
        logger.warning("classes of %s not found in the annotations: %s", classes_file, absent)
    return PreparedData(
        entries["train"],
        entries["test"],
        [csv_report, reports["train"], reports["test"]],
        extra_report={"rows_of_other_classes": other_rows, "listed_classes_not_in_annotations": absent},
        inputs=[os.path.join(annotation_folder, name) for name in ("train.csv", "validate.csv")]
        + [classes_file, audio_folder],
    )
