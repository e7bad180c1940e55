#!/usr/bin/env python3
"""ESC-50's official 5-fold cross-validation in one command: each fold tested once, the others training.

    python recipes/ESC50/cross_validate.py hparams/ESC50/datar.yaml --data_folder=/data/ESC-50 --esc10=True

Every fold is an ordinary run of ``train.py`` (``--test_fold=k``, its own output folder, preparation,
checkpoints and export; a killed fold resumes, a finished one is not trained again). Any other option
goes to every fold; ``--output_folder=X`` puts fold k's run in ``X/fold<k>``. At the end the test accuracy
of each fold, their mean and standard deviation are printed and written to ``cross_validation.json`` beside
the fold folders.

Authors
 * speechbrain-datar contributors
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys

import speechbrain as sb

from speechbrain_datar.training.recipe import load_hparams

sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from train import DATASET_HPARAMS  # noqa: E402

TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
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
    return load_hparams(hparams_file, overrides, DATASET_HPARAMS)["output_folder"]


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


def run_fold(hparams_file, options, fold, log_file=None, env=None):
    """Trains and tests one fold (unless its run has finished already); returns ``read_run`` of it.

    ``log_file``: where the run's output goes (default: this process's output); ``env``: the run's
    environment (default: this process's)."""
    folder = output_folder(hparams_file, options, fold)
    if not os.path.isfile(os.path.join(folder, "test_metrics.json")):
        command = [sys.executable, TRAIN, hparams_file] + fold_options(options, fold)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hparams_file")
    parser.add_argument("--folds", default="1,2,3,4,5", help="comma-separated folds to test (default: all five)")
    args, options = parser.parse_known_args(argv)
    folds = [int(fold) for fold in args.folds.split(",")]
    runs = [run_fold(args.hparams_file, options, fold) for fold in folds]
    result = {"hparams_file": args.hparams_file, "options": options, "top1": summary(runs), "runs": runs}
    path = os.path.join(os.path.dirname(runs[0]["output_folder"]), "cross_validation.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    for run in runs:
        print(f"fold {run['fold']}: test top-1 {run['test']['top1']:.2f}%")
    print(f"mean {result['top1']['mean']:.2f}% +- {result['top1']['std']:.2f} over folds {folds} ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
