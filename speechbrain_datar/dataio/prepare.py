"""Preparation steps shared by every classification recipe.

A recipe's ``*_prepare.py`` turns its official annotation files into *jobs*
(one per clip or segment: an id, the audio path, an optional start/stop, the
labels); these functions check the audio, drop what cannot be used with a reason,
carve the validation split, and write manifests, label encoders, feature
statistics and the skip report.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from speechbrain_datar.dataio.audio import ClipProblem, inspect_clip
from speechbrain_datar.dataio.labels import fit_label_encoder
from speechbrain_datar.dataio.manifest import already_prepared, mark_prepared, stratified_split, write_manifest
from speechbrain_datar.dataio.normalization import compute_feature_stats
from speechbrain_datar.dataio.report import write_reports

logger = logging.getLogger(__name__)


def label_encoder_file(key):
    """File name of the label encoder of ``key`` (``label`` for single-head recipes)."""
    return "label_encoder.txt" if key == "label" else f"label_encoder_{key}.txt"


def _check(job):
    key, path, entry, min_seconds, silence_threshold = job
    if path is None:
        return key, None, ClipProblem("missing", entry.get("missing_detail", key))
    try:
        info = inspect_clip(
            path, min_seconds=min_seconds, silence_threshold=silence_threshold,
            start=entry.get("start"), stop=entry.get("stop"),
        )
    except ClipProblem as problem:
        return key, None, problem
    entry = {k: v for k, v in entry.items() if k != "missing_detail"}
    return key, dict(entry, path=path, duration=info["duration"]), None


def check_audio(jobs, report, min_seconds=0.05, silence_threshold=1e-4, num_workers=4, desc="checking clips"):
    """Opens every clip or segment in threads; returns the usable entries and records the rest.

    Arguments
    ---------
    jobs : list
        ``(id, path or None, entry)``; ``entry`` holds ``start``/``stop`` (seconds or
        None) and the labels.
    report : SkipReport
        Receives a reason for every unusable job.

    Returns
    -------
    dict
        ``id -> entry`` with ``path`` and ``duration`` added.
    """
    entries = {}
    work = [(key, path, entry, min_seconds, silence_threshold) for key, path, entry in jobs]
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for key, entry, problem in tqdm(pool.map(_check, work), total=len(work), desc=desc, dynamic_ncols=True):
            if problem is not None:
                report.add(problem.reason, problem.detail or key)
            else:
                entries[key] = entry
    return entries


def drop_classes_without_training_data(train, evaluation, label_keys, report):
    """Removes evaluation entries whose label (for any key) has no training entry.

    Returns
    -------
    dict
        ``key -> sorted list of the dropped classes``.
    """
    dropped = {}
    for label_key in label_keys:
        known = {e[label_key] for e in train.values()}
        missing = sorted({e[label_key] for e in evaluation.values()} - known, key=str)
        dropped[label_key] = missing
        for clip_id in sorted(evaluation):
            label = evaluation[clip_id][label_key]
            if label not in known:
                reason = "unknown_label" if label_key == "label" else f"{label_key}_without_training_sample"
                report.add(reason, f"{clip_id}: {label_key} {label!r}")
                del evaluation[clip_id]
    return dropped


def write_prepared(
    save_folder, options, train, test, reports, label_keys=("label",), valid_ratio=0.1, seed=1234,
    compute_features=None, sample_rate=16000, stats_max_clips=2000, extra_report=None,
):
    """Carves valid from train and writes manifests, label encoders, report, statistics, options.

    The label encoders are fitted on all training labels (before the valid split)
    so that indices do not depend on the split.
    """
    if not train:
        raise RuntimeError(f"no usable training clip: {'; '.join(r.summary() for r in reports)}")
    dropped = drop_classes_without_training_data(train, test, label_keys, reports[-1])
    for key in label_keys:
        fit_label_encoder({e[key] for e in train.values()}, os.path.join(save_folder, label_encoder_file(key)))
    train_kept, valid = stratified_split(train, valid_ratio, seed, label_key=label_keys[0])
    write_manifest(train_kept, os.path.join(save_folder, "train.json"))
    write_manifest(valid, os.path.join(save_folder, "valid.json"))
    write_manifest(test, os.path.join(save_folder, "test.json"))
    for report, kept in zip(reports[-2:], (train, test)):
        report.kept(len(kept))
    extra = dict(extra_report or {})
    if any(dropped.values()):
        extra["classes_without_training_data"] = {k: [str(c) for c in v] for k, v in dropped.items()}
    write_reports(reports, os.path.join(save_folder, "prepare_report.json"), extra=extra)
    if compute_features is not None:
        compute_feature_stats(
            train_kept, compute_features, sample_rate, os.path.join(save_folder, "norm_stats.json"),
            max_clips=stats_max_clips, seed=seed,
        )
    mark_prepared(save_folder, options)
    return dropped


def require_folder(data_folder, what):
    """A clear error if the recipe's ``data_folder`` does not exist; ``what`` says what it should hold."""
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data_folder {data_folder!r} does not exist: pass --data_folder=<{what}>")


def subfolder_or_itself(data_folder, name):
    """``data_folder/name`` if that folder exists, else ``data_folder`` (files may sit directly in it)."""
    path = os.path.join(data_folder, name)
    return path if os.path.isdir(path) else data_folder


def needs_preparation(name, save_folder, options, outputs):
    """False (and a log line) if ``save_folder`` already holds ``outputs`` made with ``options``;
    otherwise creates the folder and returns True. ``options["statistics"]`` adds ``norm_stats.json``.
    """
    outputs = tuple(outputs) + (("norm_stats.json",) if options.get("statistics") else ())
    if already_prepared(save_folder, options, outputs):
        logger.info("%s already prepared in %s: skipping preparation", name, save_folder)
        return False
    os.makedirs(save_folder, exist_ok=True)
    return True
