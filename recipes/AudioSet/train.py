#!/usr/bin/env python3
"""Recipe for multi-label tagging with DATAR (or the AST baseline) on AudioSet, with class-balanced sampling.

    python recipes/AudioSet/train.py hparams/AudioSet/datar.yaml --data_folder=/data/audioset
    python recipes/AudioSet/train.py hparams/AudioSet/datar.yaml --data_folder=/data/audioset \\
        --prepare_options="{train_sets: [balanced, unbalanced]}"

``data_folder`` holds the segment lists, ``class_labels_indices.csv`` and the clips (``audio/Y<YTID>.*``).
See README.md beside this file.

Authors
 * speechbrain-datar contributors
"""

import sys

from audioset_prepare import prepare_audioset

from speechbrain_datar.training.recipe import recipe_main

if __name__ == "__main__":
    recipe_main(sys.argv[1:], prepare_audioset, dataset="AudioSet")
