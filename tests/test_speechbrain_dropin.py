"""DATAR dropped into an ESC-50-shaped SpeechBrain recipe: only the hparams entries change."""

import math

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset

HPARAMS = """
n_mels: 64
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain_datar.lobes.models.datar.DATAR
    preset: micro
    n_mels: !ref <n_mels>
    reference_frames: 64
classifier: !new:speechbrain_datar.nnet.classifier.Classifier
    input_size: 128
    n_classes: 2
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
opt_class: !name:torch.optim.AdamW
    lr: 0.002
"""


class ClassificationBrain(sb.Brain):
    """The compute_forward of SpeechBrain's ESC-50 recipe, reduced to its shape."""

    def compute_forward(self, batch, stage):
        wavs, lens = batch.wav
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lens)
        embeddings = self.modules.embedding_model(feats, lens)
        return self.modules.classifier(embeddings)

    def compute_objectives(self, predictions, batch, stage):
        return sb.nnet.losses.nll_loss(predictions, batch.label.unsqueeze(1))


def make_dataset(n_per_class=6):
    data = {}
    for i in range(2 * n_per_class):
        label = i % 2
        length = 3200 + 400 * (i // 2)
        t = torch.arange(length) / 16000
        wav = 0.5 * torch.sin(2 * math.pi * (300 if label == 0 else 3000) * t)
        data[f"clip{i}"] = {"wav": wav, "label": label}
    return DynamicItemDataset(data, output_keys=["id", "wav", "label"])


def test_datar_trains_inside_a_speechbrain_brain(tmp_path):
    hparams = load_hyperpyyaml(HPARAMS)
    brain = ClassificationBrain(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts={"device": "cpu"},
    )
    dataset = make_dataset()
    brain.fit(range(12), dataset, train_loader_kwargs={"batch_size": 4, "shuffle": True})
    brain.modules.eval()
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=12)
    with torch.no_grad():
        batch = next(iter(loader))
        predictions = brain.compute_forward(batch, sb.Stage.TEST)
    assert predictions.shape == (12, 1, 2)
    accuracy = (predictions.argmax(-1).squeeze(1) == batch.label).float().mean().item()
    assert accuracy == 1.0
