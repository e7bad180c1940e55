#!/usr/bin/env python3
"""Recipe for multi-label tagging with DATAR (or the AST baseline) on FSD50K.

    python recipes/FSD50K/train.py hparams/FSD50K/datar.yaml --data_folder=/data/fsd50k

``data_folder`` holds the release as distributed: ``FSD50K.ground_truth/``, ``FSD50K.dev_audio/`` and
``FSD50K.eval_audio/``; the official ``val`` split validates, ``eval`` tests. See README.md beside this file.
"""

import sys

from fsd50k_prepare import prepare_fsd50k

from speechbrain_datar.training.recipe import recipe_main

if __name__ == "__main__":
    recipe_main(sys.argv[1:], prepare_fsd50k, dataset="FSD50K")
