#!/usr/bin/env python3
"""Recipe for training DATAR (or the AST baseline) on Kinetics-Sounds.

    python recipes/KineticsSounds/train.py hparams/KineticsSounds/datar.yaml --data_folder=/data/kinetics

``data_folder`` holds the Kinetics-400 annotation CSVs (in ``annotations/``) and the
audio of the clips (in ``audio/``). See README.md beside this file.

Authors
 * speechbrain-datar contributors
"""

import os
import sys

from kinetics_sounds_prepare import prepare_kinetics_sounds

from speechbrain_datar.training.recipe import recipe_main

HPARAMS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "hparams")

if __name__ == "__main__":
    recipe_main(
        sys.argv[1:],
        prepare_kinetics_sounds,
        dataset_hparams=os.path.join(HPARAMS, "KineticsSounds", "kinetics_sounds.yaml"),
    )
