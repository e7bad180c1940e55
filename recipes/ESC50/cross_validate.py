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
import json
import os
import sys

from speechbrain_datar.training.cross_validation import run_fold, summary

TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")


def main(argv=None):
    """Command line: every fold of the cross-validation, then their mean and standard deviation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hparams_file")
    parser.add_argument("--folds", default="1,2,3,4,5", help="comma-separated folds to test (default: all five)")
    args, options = parser.parse_known_args(argv)
    folds = [int(fold) for fold in args.folds.split(",")]
    runs = [run_fold(TRAIN, args.hparams_file, options, fold) for fold in folds]
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
