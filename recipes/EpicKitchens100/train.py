#!/usr/bin/env python3
"""Recipe for training DATAR (or the AST baseline) on EPIC-KITCHENS-100 audio, with verb and noun heads.

    python recipes/EpicKitchens100/train.py hparams/EpicKitchens100/datar.yaml --data_folder=/data/epic

The loss is the sum of the two heads' cross-entropies; verb, noun and action
(both right) top-1/top-5 are reported, and the best checkpoint is the one with the
best validation action top-1. See README.md beside this file.

Authors
 * speechbrain-datar contributors
"""

import sys

import torch
from epic_kitchens_prepare import LABEL_KEYS, prepare_epic_kitchens

from speechbrain_datar.training.recipe import recipe_main


def action_accuracy(metrics):
    """Top-1 and top-5 action accuracy (percent): a segment's action is right when its verb and noun both are."""
    stats = {}
    for k in (1, 5):
        if all(k in metrics[key].topk for key in LABEL_KEYS):
            both = torch.stack([metrics[key].correct(k) for key in LABEL_KEYS]).all(dim=0)
            stats[f"action_top{k}"] = round(100.0 * both.float().mean().item(), 2)
    return stats


if __name__ == "__main__":
    recipe_main(
        sys.argv[1:],
        prepare_epic_kitchens,
        main_metric="action_top1",
        extra_statistics=[action_accuracy],
        dataset="EpicKitchens100",
    )
