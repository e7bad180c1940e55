"""The exported interfaces on hostile input: long, non-finite, empty or too short audio, and the wrong interface."""

import math

import numpy as np
import pytest
import soundfile
import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.lobes.features import Fbank

from speechbrain_datar.dataio.normalization import DatasetNormalization
from speechbrain_datar.inference.sliding_window import SlidingWindowEmbedding, sliding_window_embeddings
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.nnet.classifier import Classifier
from speechbrain_datar.pretrained.export import export_classifier

FEATURES = {"sample_rate": 16000, "n_mels": 32, "n_fft": 512, "win_length": 25, "hop_length": 10}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A micro DATAR exported with 1 s windows, 0.5 s hop, 3 windows per encoder call."""
    torch.manual_seed(0)
    folder = str(tmp_path_factory.mktemp("export") / "model")
    labels = CategoricalEncoder()
    labels.update_from_iterable(["a", "b", "c"])
    encoder = DATAR("micro", n_mels=32, reference_frames=101).eval()
    export_classifier(
        folder,
        encoder=encoder,
        head=Classifier(encoder.embedding_dim, 3).eval(),
        normalizer=DatasetNormalization(mean=-5.0, std=3.0),
        label_encoders={"label": labels},
        feature_options=FEATURES,
        window_frames=101,
        hop_frames=50,
        max_windows=3,
    )
    return folder


def load(folder, tmp_path):
    return EncoderClassifier.from_hparams(source=folder, savedir=str(tmp_path / "loaded"))


# ------------------------------------------------------------------ item 3: memory bounded by windows
def test_long_files_are_embedded_a_few_windows_at_a_time_with_the_whole_file_result(exported, tmp_path):
    classifier = load(exported, tmp_path)
    windows = classifier.mods.embedding_model
    calls = []
    windows.encoder.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    wav = 0.1 * torch.randn(1, 16000 * 30)  # 30 s: 59 windows
    with torch.no_grad():
        log_probs = classifier.classify_batch(wav)[0]
        # the same windows from features of the whole file, all at once
        feats = windows.normalizer(Fbank(**FEATURES)(wav), torch.ones(1))
        whole, valid = sliding_window_embeddings(windows.encoder, feats, None, 101, 50)
        expected = classifier.mods.classifier(whole)
    chunked = calls[:-1]  # the last call is the whole-file computation
    assert valid.shape == (1, 59) and len(chunked) == math.ceil(59 / 3)
    assert max(shape[0] for shape in chunked) <= 3  # never more than max_windows windows at once
    assert torch.allclose(log_probs, expected[:, 0], atol=1e-5)


def test_recipe_evaluation_embeds_windows_in_chunks():
    sizes = []

    def encoder(x, lengths):
        sizes.append(x.shape[0])
        return x.mean(dim=1, keepdim=True)

    feats = torch.randn(2, 1000, 4)
    chunked, valid = sliding_window_embeddings(encoder, feats, torch.tensor([1.0, 0.5]), 100, 50, max_windows=4)
    assert max(sizes) <= 4 and valid.sum().tolist() == 19 + 9
    assert torch.allclose(chunked, sliding_window_embeddings(encoder, feats, torch.tensor([1.0, 0.5]), 100, 50)[0])


def test_the_interface_refuses_non_finite_audio(exported, tmp_path):
    classifier = load(exported, tmp_path)
    wav = 0.1 * torch.randn(1, 16000)
    wav[0, 100] = math.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        classifier.classify_batch(wav)


# ------------------------------------------------------------------ item 5: empty and too-short input
@pytest.mark.parametrize("samples", [0, 150])
def test_the_interface_refuses_empty_or_too_short_audio(exported, tmp_path, samples):
    classifier = load(exported, tmp_path)
    path = str(tmp_path / "short.wav")
    soundfile.write(path, np.full(samples, 0.1, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="too short to classify: at least 400"):
        classifier.classify_file(path)
    assert classifier.classify_batch(0.1 * torch.randn(1, 400))[3][0] in {"a", "b", "c"}


def test_a_short_clip_padded_in_a_batch_is_measured_by_its_length():
    windows = SlidingWindowEmbedding(torch.nn.Identity(), 10, 10, features=Fbank(**FEATURES), min_samples=400)
    with pytest.raises(ValueError, match="audio of 200 samples"):
        windows.check_waveforms(torch.randn(2, 1000), torch.tensor([1.0, 0.2]))


# ------------------------------------------------------------------ item 9: a two-head export in EncoderClassifier
def test_encoder_classifier_on_a_two_head_export_says_which_interface_to_use(tmp_path):
    from speechbrain_datar.inference.interfaces import MultiHeadAudioClassifier
    from speechbrain_datar.nnet.classifier import MultiHeadClassifier

    encoders = {}
    for key, names in (("verb", ["take", "open"]), ("noun", ["tap", "cup", "pan"])):
        encoders[key] = CategoricalEncoder()
        encoders[key].update_from_iterable(names)
    encoder = DATAR("micro", n_mels=32, reference_frames=101).eval()
    folder = export_classifier(
        str(tmp_path / "epic"),
        encoder=encoder,
        head=MultiHeadClassifier(encoder.embedding_dim, {"verb": 2, "noun": 3}).eval(),
        normalizer=DatasetNormalization(),
        label_encoders=encoders,
        feature_options=FEATURES,
        window_frames=101,
        hop_frames=50,
    )
    wav = 0.1 * torch.randn(1, 16000)
    with pytest.raises(TypeError, match="several heads \\(verb, noun\\).*MultiHeadAudioClassifier"):
        EncoderClassifier.from_hparams(source=folder, savedir=str(tmp_path / "a")).classify_batch(wav)
    out = MultiHeadAudioClassifier.from_hparams(source=folder, savedir=str(tmp_path / "b")).classify_batch(wav)
    assert out["verb"][3][0] in {"take", "open"} and out["noun"][3][0] in {"tap", "cup", "pan"}
