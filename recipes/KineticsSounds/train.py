#!/usr/bin/env python3
"""Recipe for training DATAR (or the AST baseline) on Kinetics-Sounds.

    python recipes/KineticsSounds/train.py hparams/KineticsSounds/datar.yaml --data_folder=/data/kinetics

``data_folder`` holds the Kinetics-400 annotation CSVs (in ``annotations/``) and the
audio of the clips (in ``audio/``). See README.md beside this file.

Authors
 * speechbrain-datar contributors
"""

import sys

from kinetics_sounds_prepare import prepare_kinetics_sounds

from speechbrain_datar.training.recipe import recipe_main

if __name__ == "__main__":
    recipe_main(
        sys.argv[1:],
        prepare_kinetics_sounds,
        dataset="KineticsSounds",
    )
