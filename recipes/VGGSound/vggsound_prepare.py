"""Data preparation for VGGSound.

Reads the official ``vggsound.csv`` (no header; columns: YouTube id, start
second, label, ``train``/``test``) and a folder of clips the user extracted
(audio files, or the downloaded videos themselves: mp4, mkv, webm, ...; named
``<id>_<start:06d>.<ext>`` by default), and checks every clip. ``speechbrain_datar.dataio.prepare.prepare_dataset`` then writes the
manifests (``train``, ``valid`` carved per class from train, ``test``), the label
encoder, the feature statistics and the report of every clip skipped and why.

Authors
 * speechbrain-datar contributors
"""

import csv
import logging
import os

from speechbrain_datar.dataio.audio import CLIP_EXTENSIONS
from speechbrain_datar.dataio.cells import whole_number
from speechbrain_datar.dataio.prepare import PreparedData, check_audio, clip_job, dataset_folders, open_annotations
from speechbrain_datar.dataio.report import SkipReport
from speechbrain_datar.errors import DataError, MissingDataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")


def read_vggsound_csv(csv_path, report):
    """Parses ``vggsound.csv`` into ``[(ytid, start, label, split)]``.

    A file whose first row does not have VGGSound's four columns is rejected with
    a clear error; a malformed row later in the file is skipped and reported.
    """
    if not os.path.isfile(csv_path):
        raise MissingDataError(f"VGGSound annotation file not found: {csv_path}")
    rows, seen = [], set()
    with open_annotations(csv_path) as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            problem = _row_problem(row)
            if problem and number == 1:
                raise DataError(
                    f"{csv_path} does not look like vggsound.csv: it must have four columns "
                    f"(YouTube id, start second, label, train/test) and no header, "
                    f"but its first row is {row} ({problem})"
                )
            if problem:
                report.add("bad_row", f"line {number}: {row} ({problem})")
                continue
            ytid, start, label, split = (cell.strip() for cell in row)
            start = whole_number(start)
            key = f"{ytid}_{start:06d}"
            if key in seen:
                report.add("duplicate", f"line {number}: {key}")
                continue
            seen.add(key)
            rows.append((ytid, start, label, split))
    report.kept(len(rows))
    return rows


def _row_problem(row):
    if len(row) != 4:
        return f"{len(row)} columns instead of 4"
    try:
        whole_number(row[1])
    except ValueError:
        return f"start {row[1]!r} is not a whole, non-negative number of seconds"
    if row[3].strip() not in SPLITS:
        return f"split {row[3]!r} is not train or test"
    if not row[0].strip() or not row[2].strip():
        return "empty id or label"
    return None


def prepare_vggsound(
    data_folder,
    csv_file=None,
    audio_folder=None,
    filename_pattern="{ytid}_{start:06d}",
    extensions=CLIP_EXTENSIONS,
    min_seconds=0.05,
    silence_threshold=1e-4,
    num_workers=4,
    need_video=False,
):
    """Reads ``vggsound.csv`` and checks the clips it names.

    Arguments
    ---------
    data_folder : str
        Folder holding ``vggsound.csv`` and the clips (in ``audio/`` or directly).
    csv_file, audio_folder : str or None
        Override the default locations inside ``data_folder``.
    filename_pattern : str
        Clip file name without extension, formatted with ``ytid`` and ``start``.
    extensions : sequence
        Extensions tried in order.
    min_seconds : float
        Shorter clips are skipped as ``too_short``.
    silence_threshold : float or None
        Clips whose peak is below this are skipped as ``silent``.
    num_workers : int
        Threads that open clips.
    need_video : bool
        Video clips must have a video stream too (recipes that read frames).

    Returns
    -------
    PreparedData
    """
    (audio_folder,) = dataset_folders(data_folder, "folder with vggsound.csv and the clips", audio=audio_folder)
    csv_file = csv_file or os.path.join(data_folder, "vggsound.csv")
    if not os.path.isdir(audio_folder):
        raise MissingDataError(f"audio folder {audio_folder!r} does not exist")
    csv_report = SkipReport("csv")
    reports = {split: SkipReport(split) for split in SPLITS}
    jobs = {split: [] for split in SPLITS}
    for ytid, start, label, split in read_vggsound_csv(csv_file, csv_report):
        stem = filename_pattern.format(ytid=ytid, start=start)
        jobs[split].append(
            clip_job(stem, audio_folder, stem, {"start": None, "stop": None, "label": label}, extensions)
        )
    checks = dict(
        min_seconds=min_seconds, silence_threshold=silence_threshold, num_workers=num_workers, need_video=need_video
    )
    entries = {split: check_audio(jobs[split], reports[split], **checks) for split in SPLITS}
    if not entries["train"]:
        raise DataError(
            f"no usable training clip: {reports['train'].summary()}; "
            f"looked for files like {os.path.join(audio_folder, filename_pattern)}{{{','.join(extensions)}}}"
        )
    return PreparedData(
        entries["train"],
        entries["test"],
        [csv_report, reports["train"], reports["test"]],
        inputs=[csv_file, audio_folder],
    )
