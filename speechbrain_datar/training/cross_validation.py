"""Cross-validation over official folds: each fold one ordinary run of a recipe's ``train.py``.

A killed fold resumes (its run's checkpoints), a finished one is read back instead of trained again
(``test_metrics.json`` and the per-epoch lines of ``train_log.txt``). ``recipes/ESC50/cross_validate.py``
is the command; ``benchmarks/esc10.py`` runs its studies through the same functions.
"""

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys

import speechbrain as sb

from speechbrain_datar.training.hparams import load_hparams

__all__ = ["fold_options", "output_folder", "read_run", "run_fold", "summary"]

EPOCH_LINE = re.compile(
    r"^epoch: (?P<epoch>\d+)(?P<meta>.*?) - train loss: (?P<train_loss>\S+)"
    r" - valid loss: (?P<valid_loss>[^,\s]+), valid top1: (?P<valid_top1>[\d.]+)"
)


def fold_options(options, fold):
    """The options of one fold's run: ``--test_fold``, and ``--output_folder=X`` as ``X/fold<k>``."""
    return [
        f"--output_folder={os.path.join(option.split('=', 1)[1], f'fold{fold}')}"
        if option.startswith("--output_folder=")
        else option
        for option in options
    ] + [f"--test_fold={fold}"]


def output_folder(hparams_file, options, fold):
    """Where the run of ``fold`` writes (``output_folder`` of the hparams with these options)."""
    _, _, overrides = sb.parse_arguments([hparams_file] + fold_options(options, fold))
    return load_hparams(hparams_file, overrides)["output_folder"]


def read_run(folder):
    """A finished run's test metrics and, per epoch, its training seconds, losses and valid accuracy."""
    with open(os.path.join(folder, "test_metrics.json")) as f:
        test = json.load(f)
    epochs = []
    with open(os.path.join(folder, "train_log.txt")) as f:
        for line in f:
            match = EPOCH_LINE.match(line)
            if match:
                meta = dict(re.findall(r"(\w+): ([\d.e+-]+)", match["meta"]))
                epochs.append(
                    {
                        "epoch": int(match["epoch"]),
                        "train_seconds": float(meta.get("train_seconds", "nan")),
                        "train_loss": float(match["train_loss"]),
                        "valid_loss": float(match["valid_loss"]),
                        "valid_top1": float(match["valid_top1"]),
                    }
                )
    return {"test": test, "epochs": epochs}


def run_fold(train_script, hparams_file, options, fold, log_file=None, env=None):
    """Trains and tests one fold with the recipe's ``train_script`` (unless its run has finished already);
    returns ``read_run`` of it.

    ``log_file``: where the run's output goes
    (default: this process's output); ``env``: the run's environment (default: this process's)."""
    folder = output_folder(hparams_file, options, fold)
    if not os.path.isfile(os.path.join(folder, "test_metrics.json")):
        command = [sys.executable, train_script, hparams_file] + fold_options(options, fold)
        if log_file:
            os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        with open(log_file, "a") if log_file else contextlib.nullcontext() as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT if log else None, env=env)
        if done.returncode != 0:
            raise SystemExit(
                f"error: fold {fold} failed (exit {done.returncode}): {' '.join(command)}"
                + (f" (output: {log_file})" if log_file else "")
            )
    return dict(read_run(folder), fold=fold, output_folder=folder)


def summary(runs, key="top1"):
    """Mean and standard deviation (over folds) of a test statistic.

    Example
    -------
    >>> summary([{"test": {"top1": 80.0}}, {"test": {"top1": 90.0}}])
    {'mean': 85.0, 'std': 7.0711, 'folds': [80.0, 90.0]}
    """
    values = [run["test"][key] for run in runs]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 4), "std": round(std, 4), "folds": values}
