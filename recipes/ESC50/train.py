#!/usr/bin/env python3
"""Recipe for training DATAR (or AST, or SpeechBrain's CNN14) on ESC-50 or its ESC-10 subset.

To run one cross-validation split (fold 1 tested, folds 2-5 train):

    python recipes/ESC50/train.py hparams/ESC50/datar.yaml --data_folder=/path/to/ESC-50 --test_fold=1

and all five folds, with the mean and standard deviation of their test accuracies:

    python recipes/ESC50/cross_validate.py hparams/ESC50/datar.yaml --data_folder=/path/to/ESC-50

``data_folder`` holds the official ``meta/esc50.csv`` and ``audio/``; ``--esc10=True`` keeps ESC-10.

Authors
 * speechbrain-datar contributors
"""

import sys

from esc50_prepare import prepare_esc50

from speechbrain_datar.training.recipe import recipe_main

if __name__ == "__main__":
    recipe_main(sys.argv[1:], prepare_esc50, dataset="ESC50")
