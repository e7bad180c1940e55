"""Preparation steps shared by every classification recipe.

A data set's preparation function (``prepare_vggsound``, ...) takes only that
data set's arguments: it reads the official annotation files, checks the audio
(``check_audio``) and returns a ``PreparedData``: the usable training and test
entries, the skip reports, the label keys. ``prepare_dataset`` does the rest once
for all of them: the "already prepared" check, the validation split, manifests,
label encoders, feature statistics and the skip report.
"""

import csv
import dataclasses
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from speechbrain_datar.dataio.audio import CLIP_EXTENSIONS, ClipProblem, find_audio, inspect_clip
from speechbrain_datar.dataio.labels import fit_label_encoder, label_encoder_file
from speechbrain_datar.dataio.manifest import (
    already_prepared,
    clear_prepared,
    mark_prepared,
    stratified_split,
    write_manifest,
)
from speechbrain_datar.dataio.normalization import compute_feature_stats
from speechbrain_datar.dataio.report import write_reports
from speechbrain_datar.errors import DataError, MissingDataError, disk_full_error, is_disk_full

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PreparedData:
    """What a data set's preparation function found.

    Attributes
    ----------
    train, test : dict
        ``id -> entry`` (``path``, ``start``, ``stop``, ``duration`` and one entry per label key).
    reports : list of SkipReport
        Every report; the last two are the training and test splits'.
    label_keys : tuple
        The labels of an entry (``("label",)``, or EPIC's ``("verb", "noun")``).
    extra_report : dict
        Further entries for ``prepare_report.json``.
    extra_files : dict
        ``{file name: JSON content}`` written beside the manifests (e.g. ``class_names.json``).
    inputs : list
        The annotation files and clip folders read: when any of them changes, the
        next run prepares again.
    valid : dict or None
        The data set's own validation entries (FSD50K); ``None``: carved from ``train``. Its report
        is the one named ``valid``.
    """

    train: dict
    test: dict
    reports: list
    label_keys: tuple = ("label",)
    extra_report: dict = dataclasses.field(default_factory=dict)
    extra_files: dict = dataclasses.field(default_factory=dict)
    inputs: list = dataclasses.field(default_factory=list)
    valid: dict = None


def open_annotations(path):
    """Opens an annotation file for ``csv``: UTF-8, with or without a byte-order mark (spreadsheet exports add one)."""
    return open(path, newline="", encoding="utf-8-sig")


#: An annotation line longer than this is a ``bad_row`` (read in pieces of this size, never whole).
MAX_ANNOTATION_LINE = 1 << 16


def annotation_encoding(path):
    """The text encoding of an annotation file: UTF-16 when it starts with its byte-order mark, else UTF-8 (with or
    without one)."""
    with open(path, "rb") as f:
        start = f.read(2)
    return "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"


def annotation_rows(path, report, required, what="the annotation file"):
    """``(line number, {column: cell})`` of a CSV annotation file with a header line, each line parsed alone: a line
    longer than ``MAX_ANNOTATION_LINE`` characters, or one that is not CSV, is a ``bad_row`` (never held whole).

    A header without the ``required`` columns, or a file neither UTF-8 nor UTF-16 (with its byte-order mark), is a
    ``DataError`` in one line.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_datar.dataio.report import SkipReport
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("name,label\\nx,dog\\n" + "y," * 40000 + "\\n")
    >>> report = SkipReport("csv")
    >>> list(annotation_rows(path, report, ["name"])), report.counts
    ([(2, {'name': 'x', 'label': 'dog'})], {'bad_row': 1})
    """
    encoding = annotation_encoding(path)
    try:
        with open(path, encoding=encoding, newline="") as f:
            lines = _bounded_lines(f)
            number, header = next(lines, (1, None))
            header = next(csv.reader([header])) if header else []
            missing = [column for column in required if column not in header]
            if missing:
                raise DataError(f"{path} does not look like {what}: its header {header[:20]} lacks {missing}")
            for number, line in lines:
                if line is None:
                    report.add("bad_row", f"line {number}: longer than {MAX_ANNOTATION_LINE} characters")
                    continue
                if not line.strip():
                    continue
                try:
                    cells = next(csv.reader([line]))
                except csv.Error as error:
                    report.add("bad_row", f"line {number}: {error}")
                    continue
                if len(cells) != len(header):
                    report.add("bad_row", f"line {number}: {len(cells)} cells instead of {len(header)}")
                    continue
                yield number, dict(zip(header, cells))
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not UTF-8 ({error.reason} at byte {error.start}): save it as UTF-8 (or UTF-16 with its BOM)"
        ) from None


def _bounded_lines(f):
    """``(line number, line)`` of a text file, a line longer than ``MAX_ANNOTATION_LINE`` given as ``None`` (read in
    pieces and let go)."""
    number = 0
    while True:
        piece = f.readline(MAX_ANNOTATION_LINE)
        if not piece:
            return
        number += 1
        if piece.endswith(("\n", "\r")) or len(piece) < MAX_ANNOTATION_LINE:
            yield number, piece.rstrip("\r\n")
            continue
        while piece and not piece.endswith("\n"):  # the rest of a long line, read and dropped
            piece = f.readline(MAX_ANNOTATION_LINE)
        yield number, None


def clip_job(key, folder, stem, entry, extensions=CLIP_EXTENSIONS, missing_detail=None):
    """A job for ``check_audio``: the clip ``folder/stem.<ext>`` and its entry.

    A clip that does not exist is reported as ``missing`` (with ``missing_detail``
    if given); one whose name leads outside ``folder`` or has another format, as
    ``find_audio`` says.
    """
    try:
        path = find_audio(folder, stem, extensions)
    except ClipProblem as problem:
        return key, problem, entry
    if path is None and missing_detail:
        return key, ClipProblem("missing", missing_detail), entry
    return key, path, entry


def _check(job):
    key, path, entry, min_seconds, silence_threshold, need_video = job
    if isinstance(path, ClipProblem):
        return key, None, path
    if path is None:
        return key, None, ClipProblem("missing", key)
    try:
        info = inspect_clip(
            path,
            min_seconds=min_seconds,
            silence_threshold=silence_threshold,
            start=entry.get("start"),
            stop=entry.get("stop"),
            need_video=need_video,
        )
    except ClipProblem as problem:
        return key, None, problem
    # Where frames come from: the file itself unless the data set has extracted frames (EPIC's dumps).
    return (
        key,
        dict(dict(frames_folder=None, fps=None, frame_offset=0.0), **entry, path=path, duration=info["duration"]),
        None,
    )


def check_audio(jobs, report, min_seconds=0.05, silence_threshold=1e-4, num_workers=4, desc=None, need_video=False):
    """Opens every clip or segment in threads; returns the usable entries and records the rest.

    With ``need_video``, a video file without a video stream, or whose video stream
    ends before the segment does, is unusable too.

    Arguments
    ---------
    jobs : list
        ``(id, path, entry)`` (see ``clip_job``); ``entry`` holds ``start``/``stop``
        (seconds or None) and the labels.
    report : SkipReport
        Receives a reason for every unusable job.
    desc : str
        The progress bar's label (default: ``checking <report's name> clips``).

    Returns
    -------
    dict
        ``id -> entry`` with ``path`` and ``duration`` added.
    """
    entries = {}
    work = [(key, path, entry, min_seconds, silence_threshold, need_video) for key, path, entry in jobs]
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        label = desc or f"checking {report.name} clips"
        progress = tqdm(pool.map(_check, work), total=len(work), desc=label, dynamic_ncols=True)
        for key, entry, problem in progress:
            if problem is not None:
                report.add(problem.reason, problem.detail or key)
            else:
                entries[key] = entry
    return entries


def labels_of(value):
    """The labels of an entry's label field: a list (multi-label tagging) or one label.

    Example
    -------
    >>> labels_of(["dog", "bark"]), labels_of("dog")
    (['dog', 'bark'], ['dog'])
    """
    return list(value) if isinstance(value, list) else [value]


def drop_unstorable_labels(entries, label_keys, report):
    """Removes entries with a label that a label-encoder file cannot hold (`` => `` or a line break in it).

    Example
    -------
    >>> from speechbrain_datar.dataio.report import SkipReport
    >>> entries, report = {"a": {"label": "dog"}, "b": {"label": "x => y"}}, SkipReport("train")
    >>> drop_unstorable_labels(entries, ["label"], report); sorted(entries), report.counts
    (['a'], {'unusable_label': 1})
    """
    for clip_id in sorted(entries):
        labels = [str(label) for key in label_keys for label in labels_of(entries[clip_id][key])]
        bad = [label for label in labels if " => " in label or "\n" in label or "\r" in label]
        if bad:
            report.add("unusable_label", f"{clip_id}: {bad[0]!r} (' => ' and line breaks cannot be stored)")
            del entries[clip_id]


def drop_classes_without_training_data(train, evaluation, label_keys, report):
    """Removes evaluation entries whose label (for any key) has no training entry.

    Returns
    -------
    dict
        ``key -> sorted list of the dropped classes``.
    """
    dropped = {}
    for label_key in label_keys:
        known = {label for e in train.values() for label in labels_of(e[label_key])}
        missing = sorted({label for e in evaluation.values() for label in labels_of(e[label_key])} - known, key=str)
        dropped[label_key] = missing
        for clip_id in sorted(evaluation):
            label = evaluation[clip_id][label_key]
            if isinstance(label, list):  # multi-label: the clip keeps its known labels; each dropped one is reported
                for unknown in [one for one in label if one not in known]:
                    report.add("label_without_training_data", f"{clip_id}: {label_key} {unknown!r} dropped")
                label[:] = [one for one in label if one in known]
                if not label:
                    report.add("no_known_label", f"{clip_id}: none of its labels has training data")
                    del evaluation[clip_id]
            elif label not in known:
                reason = "unknown_label" if label_key == "label" else f"{label_key}_without_training_sample"
                report.add(reason, f"{clip_id}: {label_key} {label!r}")
                del evaluation[clip_id]
    return dropped


def write_prepared(
    save_folder, *, data, valid_ratio, seed, compute_features=None, sample_rate=16000, stats_max_clips=2000
):
    """Carves valid from train and writes manifests, label encoders, report, statistics and extra files.

    The label encoders are fitted on all training labels (before the valid split)
    so that indices do not depend on the split.

    Returns
    -------
    list
        The names of the files written.
    """
    valid_report = next((r for r in data.reports if r.name == "valid"), None)
    evaluation = [(data.test, data.reports[-1])] + ([(data.valid, valid_report)] if data.valid is not None else [])
    for entries, report in [(data.train, data.reports[-2])] + evaluation:
        drop_unstorable_labels(entries, data.label_keys, report)
    if not data.train:
        raise DataError(f"no usable training clip: {'; '.join(r.summary() for r in data.reports)}")
    dropped = {}
    for entries, report in evaluation:
        for key, classes in drop_classes_without_training_data(data.train, entries, data.label_keys, report).items():
            dropped[key] = sorted(set(dropped.get(key, [])) | set(classes), key=str)
    outputs = ["train.json", "valid.json", "test.json", "prepare_report.json", "label_keys.json"]
    with open(os.path.join(save_folder, "label_keys.json"), "w") as f:
        json.dump(list(data.label_keys), f)
    for key in data.label_keys:
        outputs.append(label_encoder_file(key))
        fit_label_encoder(
            {label for e in data.train.values() for label in labels_of(e[key])}, os.path.join(save_folder, outputs[-1])
        )
    if data.valid is None:
        train_kept, valid = stratified_split(data.train, valid_ratio, seed, label_key=data.label_keys[0])
    else:
        train_kept, valid = data.train, data.valid
    for name, entries in (("train.json", train_kept), ("valid.json", valid), ("test.json", data.test)):
        write_manifest(entries, os.path.join(save_folder, name))
    for kept, report in [(data.train, data.reports[-2])] + evaluation:
        report.kept(len(kept))
    extra = dict(data.extra_report)
    if any(dropped.values()):
        extra["classes_without_training_data"] = {k: [str(c) for c in v] for k, v in dropped.items()}
    write_reports(data.reports, os.path.join(save_folder, "prepare_report.json"), extra=extra)
    for name, content in data.extra_files.items():
        with open(os.path.join(save_folder, name), "w") as f:
            json.dump(content, f, indent=2)
        outputs.append(name)
    if compute_features is not None:
        compute_feature_stats(
            train_kept,
            compute_features,
            sample_rate,
            os.path.join(save_folder, "norm_stats.json"),
            max_clips=stats_max_clips,
            seed=seed,
        )
        outputs.append("norm_stats.json")
    return outputs


def prepare_dataset(
    prepare,
    save_folder,
    *,
    dataset_options,
    valid_ratio,
    seed,
    compute_features=None,
    sample_rate=16000,
    stats_max_clips=2000,
    skip_prep=False,
):
    """Runs a data set's preparation into ``save_folder`` once; a rerun with the same options, annotation
    files and clip folders does nothing.

    Arguments
    ---------
    prepare : callable
        The data set's preparation function, called with ``dataset_options``;
        returns a ``PreparedData``.
    save_folder : str
        Where the manifests, label encoders, statistics and report go.
    dataset_options : dict
        The data set's arguments (``data_folder`` and whatever else ``prepare`` takes).
    valid_ratio : float
        Fraction of each class's training clips used for validation.
    seed : int
        Seed of the validation split and of the statistics subset.
    compute_features : callable or None
        Feature extractor for the normalisation statistics (none computed if ``None``).
    sample_rate : int
        Rate clips are loaded at for the statistics.
    stats_max_clips : int
        Clips used for the statistics at most.
    skip_prep : bool
        Do nothing.
    """
    if skip_prep:
        return
    options = dict(
        dataset=getattr(prepare, "__name__", str(prepare)),
        **{k: os.path.abspath(v) if k.endswith("_folder") and v else v for k, v in dataset_options.items()},
        valid_ratio=valid_ratio,
        seed=seed,
        statistics=compute_features is not None,
        sample_rate=sample_rate,
        stats_max_clips=stats_max_clips,
    )
    if already_prepared(save_folder, options):
        logger.info("%s already prepared in %s: skipping preparation", options["dataset"], save_folder)
        return
    os.makedirs(save_folder, exist_ok=True)
    clear_prepared(save_folder)  # a preparation that fails half-way is never taken for a finished one
    data = prepare(**dataset_options)
    try:
        outputs = write_prepared(
            save_folder,
            data=data,
            valid_ratio=valid_ratio,
            seed=seed,
            compute_features=compute_features,
            sample_rate=sample_rate,
            stats_max_clips=stats_max_clips,
        )
        mark_prepared(save_folder, options, outputs, data.inputs)
    except OSError as error:
        if not is_disk_full(error):
            raise
        # Nothing is marked prepared: the next run prepares again.
        raise disk_full_error(save_folder, "writing the prepared data") from error


def dataset_folders(data_folder, what, **subfolders):
    """Checks that ``data_folder`` exists and locates its subfolders.

    Each keyword is a subfolder's usual name and the path the user gave for it
    (``None``: ``data_folder/<name>`` if that folder exists, else ``data_folder``
    itself, as files may sit directly in it). ``what`` says what the data folder
    should hold, for the error message.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(folder, "audio"))
    >>> [os.path.relpath(p, folder) for p in dataset_folders(folder, "clips", audio=None, annotations=None)]
    ['audio', '.']
    """
    if not os.path.isdir(data_folder):
        raise MissingDataError(f"data_folder {data_folder!r} does not exist: pass --data_folder=<{what}>")
    located = []
    for name, given in subfolders.items():
        default = os.path.join(data_folder, name)
        located.append(given or (default if os.path.isdir(default) else data_folder))
    return located
