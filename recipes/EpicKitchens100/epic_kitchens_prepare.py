"""Data preparation for EPIC-KITCHENS-100 (audio), with two labels per segment: verb and noun.

Reads the official annotation files from ``annotation_folder``:
``EPIC_100_train.csv`` and ``EPIC_100_validation.csv`` (narration_id, participant_id,
video_id, start_timestamp / stop_timestamp as ``HH:MM:SS.ff``, verb_class,
noun_class, ...), and optionally ``EPIC_100_verb_classes.csv`` /
``EPIC_100_noun_classes.csv`` (id, key, ...) for class names. A segment's audio
comes from its video's extracted audio (``<audio_folder>/<video_id>.wav|flac|...``)
or from the official video itself (``<participant>/videos/<video_id>.MP4``); segments
are read by start/stop (seeking in videos), never cut on disk. The validation split is the test set
(the paper reports 67,217 train and 9,668 test segments, 97 verbs and 293 nouns).

Class ids stay the official ids, so results compare with published ones. Verb or
noun classes with no training segment are removed from the test set and listed
in the report. Malformed timestamps, stop before start, segments beyond the end
of their audio file and missing video audio are reported and skipped.

Authors
 * speechbrain-datar contributors
"""

import csv
import logging
import os
import re

from speechbrain_datar.dataio.audio import CLIP_EXTENSIONS
from speechbrain_datar.dataio.cells import whole_number
from speechbrain_datar.dataio.prepare import PreparedData, check_audio, clip_job, dataset_folders, open_annotations
from speechbrain_datar.dataio.report import SkipReport
from speechbrain_datar.errors import DataError, MissingDataError

logger = logging.getLogger(__name__)

LABEL_KEYS = ("verb", "noun")
REQUIRED_COLUMNS = ("narration_id", "video_id", "start_timestamp", "stop_timestamp", "verb_class", "noun_class")
_TIMESTAMP = re.compile(r"^([0-9]+):([0-5][0-9]):([0-5][0-9](?:\.[0-9]+)?)$", re.ASCII)


def parse_timestamp(text):
    """Seconds of an EPIC ``HH:MM:SS.ff`` timestamp.

    Example
    -------
    >>> parse_timestamp("00:01:02.50")
    62.5
    >>> parse_timestamp("01:00:00.089")
    3600.089
    >>> parse_timestamp("00:00:0x.50")
    Traceback (most recent call last):
    ...
    ValueError: malformed timestamp '00:00:0x.50' (expected HH:MM:SS.ff)
    """
    match = _TIMESTAMP.match((text or "").strip())
    if not match:
        raise ValueError(f"malformed timestamp {text!r} (expected HH:MM:SS.ff)")
    hours, minutes, seconds = match.groups()
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 6)


def read_class_names(path):
    """``{id: key}`` from an EPIC class file, or ``{}`` if it is absent."""
    if not os.path.isfile(path):
        return {}
    with open_annotations(path) as f:
        return {int(row["id"]): row["key"] for row in csv.DictReader(f)}


def read_segments(path, report):
    """Rows of an EPIC annotation file as ``(narration_id, video_id, start, stop, verb, noun, frames)``; ``frames``
    is ``(start_frame, stop_frame)``, or ``None`` when the file has no valid frame numbers."""
    if not os.path.isfile(path):
        raise MissingDataError(f"EPIC-KITCHENS annotation file not found: {path}")
    segments = []
    with open_annotations(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path} does not look like an EPIC-KITCHENS-100 annotation file: missing {missing}")
        for number, row in enumerate(reader, start=2):
            narration = row["narration_id"]
            if None in row.values() or None in row:
                report.add(
                    "bad_row",
                    f"line {number}: {len([v for v in row.values() if v is not None])} cells, "
                    f"not the header's {len(reader.fieldnames)}",
                )
                continue
            try:
                start, stop = parse_timestamp(row["start_timestamp"]), parse_timestamp(row["stop_timestamp"])
            except ValueError as error:
                report.add("bad_timestamp", f"{narration}: {error}")
                continue
            if stop <= start:
                report.add("stop_before_start", f"{narration}: {row['start_timestamp']} -> {row['stop_timestamp']}")
                continue
            try:
                verb, noun = whole_number(row["verb_class"]), whole_number(row["noun_class"])
            except ValueError:
                report.add(
                    "bad_row", f"{narration}: verb_class {row['verb_class']!r}, noun_class {row['noun_class']!r}"
                )
                continue
            frames = None
            if "start_frame" in row and "stop_frame" in row:
                try:
                    frames = whole_number(row["start_frame"]), whole_number(row["stop_frame"])
                except ValueError:
                    report.add(
                        "bad_frame_numbers",
                        f"{narration}: start_frame {row['start_frame']!r}, stop_frame "
                        f"{row['stop_frame']!r} (its frames are read from the video)",
                    )
            segments.append((narration, row["video_id"], start, stop, verb, noun, frames))
    return segments


def video_folder(data_folder, audio_folder, video_id, extensions=CLIP_EXTENSIONS):
    """Where a video's audio is: ``audio_folder/<video_id>.<ext>`` (extracted audio, or the video there), else
    the official layout ``data_folder/<participant>/videos/<video_id>.MP4``."""
    if any(os.path.isfile(os.path.join(audio_folder, video_id + ext)) for ext in extensions):
        return audio_folder
    return os.path.join(data_folder, video_id.split("_")[0], "videos")


def prepare_epic_kitchens(
    data_folder,
    annotation_folder=None,
    audio_folder=None,
    extensions=CLIP_EXTENSIONS,
    min_seconds=0.0,
    num_workers=4,
    need_video=False,
):
    """Reads the EPIC-KITCHENS-100 annotations and checks every segment against its video's audio.

    ``annotation_folder`` defaults to ``data_folder/annotations`` (or ``data_folder``),
    ``audio_folder`` to ``data_folder/audio`` (or ``data_folder``): a video's audio is
    ``audio_folder/<video_id>.<ext>`` (extracted audio, or a video file), else the
    video of the official layout, ``data_folder/<participant>/videos/<video_id>.MP4``,
    read by seeking to each segment. Silent segments are kept (quiet actions are
    real data). Class names, when the class files are present, go to ``class_names.json``.

    Returns
    -------
    PreparedData
    """
    annotation_folder, audio_folder = dataset_folders(
        data_folder, "folder with the annotations and audio", annotations=annotation_folder, audio=audio_folder
    )
    reports, entries = {}, {}
    for split, name in (("train", "EPIC_100_train.csv"), ("test", "EPIC_100_validation.csv")):
        reports[split] = SkipReport(split)
        jobs = []
        for narration, video, start, stop, verb, noun, frames in read_segments(
            os.path.join(annotation_folder, name), reports[split]
        ):
            entry = {"start": start, "stop": stop, "verb": verb, "noun": noun, "video_id": video}
            dumps = os.path.join(data_folder, video.split("_")[0], "rgb_frames", video)
            last_frame = os.path.join(dumps, f"frame_{frames[1]:010d}.jpg") if frames else ""
            if frames and frames[1] > frames[0] and os.path.isfile(last_frame):  # else: frames from the video
                # EPIC's extracted frames serve the frames item: frame number = t * fps + offset
                fps = (frames[1] - frames[0]) / (stop - start)
                entry.update(frames_folder=dumps, fps=round(fps, 4), frame_offset=round(frames[0] - start * fps, 4))
            folder = video_folder(data_folder, audio_folder, video, extensions)
            missing = f"{narration}: no audio or video file for {video} in {audio_folder} or {folder}"
            jobs.append(clip_job(narration, folder, video, entry, extensions, missing_detail=missing))
        entries[split] = check_audio(
            jobs,
            reports[split],
            min_seconds,
            None,
            num_workers,
            desc=f"checking {split} segments",
            need_video=need_video,
        )
    names = {
        key: read_class_names(os.path.join(annotation_folder, f"EPIC_100_{key}_classes.csv")) for key in LABEL_KEYS
    }
    extra_files = {}
    if any(names.values()):
        extra_files["class_names.json"] = {key: {str(k): v for k, v in table.items()} for key, table in names.items()}
    videos = sorted(
        {os.path.join(data_folder, e["video_id"].split("_")[0], "videos") for e in entries["train"].values()}
    )
    return PreparedData(
        entries["train"],
        entries["test"],
        [reports["train"], reports["test"]],
        LABEL_KEYS,
        extra_files=extra_files,
        inputs=[annotation_folder, audio_folder] + videos,
    )
