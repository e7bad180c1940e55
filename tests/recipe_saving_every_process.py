"""The VGGSound recipe, and then every process saves its final weights and the clip ids of its training
batches per epoch (for the torchrun tests).

torchrun --nproc_per_node=2 tests/recipe_saving_every_process.py hparams/datar.yaml ...
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "recipes", "VGGSound"))

from vggsound_prepare import prepare_vggsound  # noqa: E402

from speechbrain_datar.nnet.layers import unwrap_module  # noqa: E402
from speechbrain_datar.training.brain import AudioClassificationBrain  # noqa: E402
from speechbrain_datar.training.recipe import recipe_main  # noqa: E402


def recording(fit_batch):
    """``fit_batch`` that first appends ``<epoch> <step> <clip id>`` lines to ``ids_rank<RANK>.txt`` (a line
    per clip, written at once, so that a killed run leaves what it trained on)."""

    def fit_batch_recording_ids(self, batch):
        path = os.path.join(self.hparams.output_folder, f"ids_rank{os.environ.get('RANK', '0')}.txt")
        with open(path, "a") as f:
            f.writelines(f"{self.hparams.epoch_counter.current} {self.step} {i}\n" for i in batch.id)
        return fit_batch(self, batch)

    return fit_batch_recording_ids


if __name__ == "__main__":
    AudioClassificationBrain.fit_batch = recording(AudioClassificationBrain.fit_batch)
    brain = recipe_main(sys.argv[1:], prepare_vggsound)
    if brain is None:  # --write_shards_only: nothing trained
        sys.exit(0)
    weights = {
        f"{name}.{key}": tensor.cpu()
        for name, module in brain.modules.items()
        for key, tensor in unwrap_module(module).state_dict().items()
    }
    torch.save(weights, os.path.join(brain.hparams.output_folder, f"weights_rank{os.environ.get('RANK', '0')}.pt"))
