"""DATAR dropped into an ESC-50-shaped SpeechBrain recipe: only the hparams entries change."""

import math

import pytest
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
        # the head owns its loss (its output is {"label": log_probs})
        return self.modules.classifier.loss(predictions, {"label": batch.label})


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
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": "cpu"},
    )
    dataset = make_dataset()
    brain.fit(range(12), dataset, train_loader_kwargs={"batch_size": 4, "shuffle": True})
    brain.modules.eval()
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=12)
    with torch.no_grad():
        batch = next(iter(loader))
        predictions = brain.compute_forward(batch, sb.Stage.TEST)["label"]
    assert predictions.shape == (12, 1, 2)
    accuracy = (predictions.argmax(-1).squeeze(1) == batch.label).float().mean().item()
    assert accuracy == 1.0


ESC50_HPARAMS = """
sample_rate: 16000
n_mels: 80
out_n_neurons: 2
compute_stft: !new:speechbrain.processing.features.STFT
    n_fft: 1024
    hop_length: 11.6099
    win_length: 23.2199
    sample_rate: !ref <sample_rate>
compute_fbank: !new:speechbrain.processing.features.Filterbank
    n_mels: !ref <n_mels>
    n_fft: 1024
    sample_rate: !ref <sample_rate>
    log_mel: False
# the README's snippet: only these two entries change in SpeechBrain's ESC-50 cnn14.yaml
embedding_model: !new:speechbrain_datar.lobes.models.{module}
    preset: micro
    n_mels: !ref <n_mels>
    {length_argument}: 431
classifier: !new:torch.nn.Linear
    in_features: !apply:getattr [!ref <embedding_model>, embedding_dim]
    out_features: !ref <out_n_neurons>
compute_cost: !new:speechbrain.nnet.losses.LogSoftmaxWrapper
    loss_fn: !new:speechbrain.nnet.losses.AdditiveAngularMargin
        margin: 0.2
        scale: 30
modules:
    compute_stft: !ref <compute_stft>
    compute_fbank: !ref <compute_fbank>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
opt_class: !name:torch.optim.Adam
    lr: 0.0002              # cnn14.yaml's
"""


class ESC50ShapedBrain(sb.Brain):
    """SpeechBrain ESC-50 recipe's ``compute_forward``: STFT -> magnitude -> Filterbank, no lengths."""

    def compute_forward(self, batch, stage):
        wavs, lens = batch.wav
        power = sb.processing.features.spectral_magnitude(self.modules.compute_stft(wavs), power=0.5)
        embeddings = self.modules.embedding_model(self.modules.compute_fbank(power))
        if embeddings.ndim == 4:
            embeddings = embeddings.mean((-1, -2))
        return self.modules.classifier(embeddings), lens

    def compute_objectives(self, predictions, batch, stage):
        predictions, lens = predictions
        return self.hparams.compute_cost(predictions, batch.label.reshape(-1, 1), lens)


@pytest.mark.parametrize("module,length_argument", [("datar.DATAR", "reference_frames"), ("ast.AST", "target_length")])
def test_encoders_train_in_speechbrains_esc50_recipe_as_it_calls_them(module, length_argument):
    hparams = load_hyperpyyaml(ESC50_HPARAMS.format(module=module, length_argument=length_argument))
    brain = ESC50ShapedBrain(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams, run_opts={"device": "cpu"}
    )
    dataset = make_dataset()
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=12)
    batch = next(iter(loader))

    def loss():
        brain.modules.eval()
        with torch.no_grad():
            return brain.compute_objectives(brain.compute_forward(batch, sb.Stage.TEST), batch, sb.Stage.TEST).item()

    before = loss()
    brain.fit(range(12), dataset, train_loader_kwargs={"batch_size": 4, "shuffle": True})
    with torch.no_grad():
        predictions, _ = brain.compute_forward(batch, sb.Stage.TEST)
    assert predictions.shape == (12, 1, 2)
    assert loss() < 0.5 * before
