"""The VGGSound recipe, and then every process saves its final weights (for the torchrun test).

torchrun --nproc_per_node=2 tests/recipe_saving_every_process.py hparams/datar.yaml ...
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "recipes", "VGGSound"))

from vggsound_prepare import prepare_vggsound  # noqa: E402

from speechbrain_datar.nnet.layers import unwrap_module  # noqa: E402
from speechbrain_datar.training.recipe import recipe_main  # noqa: E402

if __name__ == "__main__":
    brain = recipe_main(sys.argv[1:], prepare_vggsound)
    weights = {
        f"{name}.{key}": tensor.cpu()
        for name, module in brain.modules.items()
        for key, tensor in unwrap_module(module).state_dict().items()
    }
    torch.save(weights, os.path.join(brain.hparams.output_folder, f"weights_rank{os.environ.get('RANK', '0')}.pt"))
