#!/usr/bin/env python3
"""Recipe for training DATAR (or the AST baseline) on EPIC-KITCHENS-100 audio, with verb and noun heads.

    python recipes/EpicKitchens100/train.py hparams/datar.yaml --data_folder=/data/epic \\
        --classifier_heads="{verb: 97, noun: 293}" --number_of_epochs=100

The loss is the sum of the two heads' cross-entropies; verb, noun and action
(both right) top-1/top-5 are reported. See README.md beside this file.

Authors
 * speechbrain-datar contributors
"""

import os
import sys

from speechbrain_datar.training.recipe import recipe_main

sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from epic_kitchens_prepare import LABEL_KEYS, prepare_epic_kitchens  # noqa: E402

if __name__ == "__main__":
    recipe_main(sys.argv[1:], prepare_epic_kitchens, label_keys=LABEL_KEYS)
