#!/usr/bin/env python3
"""Recipe for training DATAR (or the AST baseline) on VGGSound.

To run it:

    python recipes/VGGSound/train.py hparams/datar.yaml --data_folder=/path/to/vggsound
    python recipes/VGGSound/train.py hparams/ast.yaml --data_folder=/path/to/vggsound

``data_folder`` holds the official ``vggsound.csv`` and the clips the user
extracted (``<id>_<start:06d>.wav|flac|ogg``, in ``audio/`` or directly). The
run prepares the data once, trains with checkpoints (a killed run resumes from
the last one), tests the best checkpoint and exports a folder that
``EncoderClassifier.from_hparams`` loads.

Authors
 * speechbrain-datar contributors
"""

import sys

from vggsound_prepare import prepare_vggsound

from speechbrain_datar.training.recipe import recipe_main

if __name__ == "__main__":
    recipe_main(sys.argv[1:], prepare_vggsound, dataset="VGGSound")
