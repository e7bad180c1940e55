"""The exported inference folder, whatever wraps the trained modules."""

import numpy as np
import soundfile as sf
import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.classifiers import EncoderClassifier

from speechbrain_datar.dataio.normalization import DatasetNormalization
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.nnet.classifier import Classifier
from speechbrain_datar.pretrained.export import export_classifier


def test_modules_wrapped_by_torch_compile_and_data_parallel_export_plain(tmp_path):
    """``--compile`` (and DDP) wrap the Brain's modules; the export must hold the plain ones."""
    encoder = DATAR("micro", n_mels=32).eval()
    head = Classifier(input_size=encoder.embedding_dim, n_classes=3).eval()
    labels = CategoricalEncoder()
    labels.update_from_iterable(["a", "b", "c"])
    folder = export_classifier(
        str(tmp_path / "model"),
        encoder=torch.compile(torch.nn.DataParallel(encoder)),
        head=torch.compile(head),
        normalizer=DatasetNormalization(mean=-4.0, std=3.0),
        label_encoders={"label": labels},
        feature_options={"n_mels": 32},
        window_frames=128,
        hop_frames=64,
    )
    saved = torch.load(f"{folder}/embedding_model.ckpt")
    assert list(saved) == list(encoder.state_dict())  # no "_orig_mod." or "module." prefixes
    hparams = open(f"{folder}/hyperparams.yaml").read()
    assert "OptimizedModule" not in hparams and "speechbrain_datar.lobes.models.datar.DATAR" in hparams

    classifier = EncoderClassifier.from_hparams(source=folder, savedir=str(tmp_path / "loaded"))
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(classifier.hparams.encoder.state_dict()[name], tensor), name
    sf.write(str(tmp_path / "clip.wav"), np.random.RandomState(0).randn(16000).astype("float32") * 0.1, 16000)
    _, score, _, label = classifier.classify_file(str(tmp_path / "clip.wav"))
    assert label[0] in {"a", "b", "c"} and torch.isfinite(score).all()
