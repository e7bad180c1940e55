"""Data preparation for ESC-50 (and its ESC-10 subset) in the official layout.

``data_folder`` holds ``meta/esc50.csv`` (columns ``filename, fold, target, category, esc10, src_file,
take``) and ``audio/`` with the clips it names. The official protocol is 5-fold cross-validation on the
folds the CSV gives: ``test_fold`` is tested, the other folds train (``prepare_dataset`` carves a
per-class validation part from them). ``esc10=True`` keeps the 10 classes marked in the ``esc10`` column.

Authors
 * speechbrain-datar contributors
"""

import logging
import os

from speechbrain_datar.dataio.prepare import PreparedData, annotation_rows, check_audio, clip_job, dataset_folders
from speechbrain_datar.dataio.report import SkipReport
from speechbrain_datar.errors import DataError, MissingDataError

logger = logging.getLogger(__name__)

COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
FOLDS = (1, 2, 3, 4, 5)


def read_esc50_csv(csv_path, report, esc10=False):
    """The rows of ``meta/esc50.csv`` as ``[(filename, fold, category)]``.

    A file without ESC-50's columns, or neither UTF-8 nor UTF-16, is rejected in one line; a row with an empty
    file name or category, a fold outside 1-5, a line too long or not CSV is counted as ``bad_row``; a file name
    whose stem was seen before (``x.wav`` after ``x.ogg``: one clip path) as ``duplicate``; with ``esc10``, the
    rows outside ESC-10 are left out (not counted as problems).
    """
    if not os.path.isfile(csv_path):
        raise MissingDataError(f"ESC-50 annotation file not found: {csv_path} (expected meta/esc50.csv)")
    rows, seen = [], set()
    required = ("filename", "fold", "category", "esc10")
    try:
        for number, row in annotation_rows(csv_path, report, required, "esc50.csv"):
            problem = _row_problem(row)
            if problem:
                report.add("bad_row", f"line {number}: {problem}")
                continue
            if esc10 and row["esc10"].strip().lower() != "true":
                continue
            filename = row["filename"].strip()
            stem = os.path.splitext(filename)[0]
            if stem in seen:
                report.add("duplicate", f"line {number}: {filename} (a clip named {stem} is listed before)")
                continue
            seen.add(stem)
            rows.append((filename, int(row["fold"]), row["category"].strip()))
    except DataError as error:
        raise DataError(f"{error} (expected esc50.csv's columns: {', '.join(COLUMNS)})") from None
    report.kept(len(rows))
    return rows


def _row_problem(row):
    if not row["filename"].strip() or not row["category"].strip():
        return "empty filename or category"
    fold = row["fold"].strip()
    if not (fold.isascii() and fold.isdigit() and len(fold) <= 2) or int(fold) not in FOLDS:
        return f"fold {fold[:20]!r} is not one of {FOLDS}"
    return None


def prepare_esc50(
    data_folder,
    test_fold=1,
    esc10=False,
    csv_file=None,
    audio_folder=None,
    min_seconds=0.05,
    silence_threshold=None,
    num_workers=4,
):
    """Reads ``meta/esc50.csv`` and checks the clips of one cross-validation split.

    Arguments
    ---------
    data_folder : str
        Folder with ``meta/esc50.csv`` and ``audio/``.
    test_fold : int
        The fold tested (1-5); the other four train.
    esc10 : bool
        Keep only the ESC-10 subset (10 classes, 400 clips).
    csv_file, audio_folder : str or None
        Override the default locations inside ``data_folder``.
    min_seconds : float
        Shorter clips are skipped as ``too_short``.
    silence_threshold : float or None
        Clips whose peak is below this are skipped as ``silent``. ``None`` by default: ESC-50 pads its
        clips with digital silence, and its quiet classes (clock ticks) are real recordings.
    num_workers : int
        Threads that open clips.

    Returns
    -------
    PreparedData
    """
    if int(test_fold) not in FOLDS:
        raise DataError(f"test_fold must be one of {FOLDS}, got {test_fold!r}")
    (audio_folder,) = dataset_folders(data_folder, "ESC-50 folder with meta/esc50.csv and audio/", audio=audio_folder)
    csv_file = csv_file or os.path.join(data_folder, "meta", "esc50.csv")
    csv_report = SkipReport("csv")
    reports = {split: SkipReport(split) for split in ("train", "test")}
    jobs = {"train": [], "test": []}
    for filename, fold, category in read_esc50_csv(csv_file, csv_report, esc10=esc10):
        stem, _ = os.path.splitext(filename)
        split = "test" if fold == int(test_fold) else "train"
        entry = {"start": None, "stop": None, "label": category, "fold": fold}
        jobs[split].append(
            clip_job(
                stem,
                audio_folder,
                stem,
                entry,
                missing_detail=f"{filename} (fold {fold}) is in the CSV but not in {audio_folder}",
            )
        )
    entries = {
        split: check_audio(
            jobs[split], reports[split], min_seconds, silence_threshold, num_workers, desc=f"checking {split} clips"
        )
        for split in ("train", "test")
    }
    if not entries["train"]:
        raise DataError(f"no usable training clip: {reports['train'].summary()}")
    return PreparedData(
        entries["train"],
        entries["test"],
        [csv_report, reports["train"], reports["test"]],
        extra_report={"test_fold": int(test_fold), "esc10": bool(esc10)},
        inputs=[csv_file, audio_folder],
    )
