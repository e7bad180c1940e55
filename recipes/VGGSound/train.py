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

import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_datar.training.recipe import run_classification_recipe

sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from vggsound_prepare import prepare_vggsound  # noqa: E402


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(
        prepare_vggsound,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "valid_ratio": hparams["valid_ratio"],
            "seed": hparams["seed"],
            "compute_features": hparams["compute_features"],
            "sample_rate": hparams["sample_rate"],
            "stats_max_clips": hparams["stats_max_clips"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    run_classification_recipe(hparams, run_opts, label_keys=("label",))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as error:
        sys.exit(f"error: {error}")
