"""SpeechBrain's CNN14 as this package exports it: its features stream, so its export classifies files of any
length as the other models' do."""

import soundfile
import torch
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_datar.dataio.normalization import DatasetNormalization
from speechbrain_datar.inference.interfaces import StreamingClassifier
from speechbrain_datar.inference.sliding_window import WaveformFrames
from speechbrain_datar.lobes.features import MagnitudeMelLog1p
from speechbrain_datar.lobes.models.cnn14 import CNN14
from speechbrain_datar.nnet.classifier import Classifier
from speechbrain_datar.pretrained.export import export_classifier


def test_cnn14_features_are_read_in_chunks_as_the_whole_waveform_gives_them():
    features, wavs = MagnitudeMelLog1p(sample_rate=16000, n_mels=32), 0.1 * torch.randn(1, 24000)
    part = WaveformFrames(wavs, features).frames(11, 40)
    assert torch.allclose(part, features(wavs)[:, 11:40], atol=1e-5)


def test_a_cnn14_export_streams_a_file_as_classify_batch_classifies_it(tmp_path):
    torch.manual_seed(0)
    labels = CategoricalEncoder()
    labels.update_from_iterable(["dog", "rain", "siren"])
    encoder = CNN14(n_mels=32, emb_dim=32).eval()
    features = MagnitudeMelLog1p(sample_rate=16000, n_mels=32)
    export_classifier(
        str(tmp_path / "cnn14"),
        encoder=encoder,
        head=Classifier(32, 3).eval(),
        normalizer=DatasetNormalization(mean=0.5, std=1.0),
        label_encoders={"label": labels},
        feature_options=features.options,
        feature_class=features.exported_class,
        window_frames=87,
        hop_frames=44,
    )
    model = StreamingClassifier.from_hparams(source=str(tmp_path / "cnn14"), savedir=str(tmp_path / "loaded"))
    wav = 0.1 * torch.randn(16000 * 3)
    soundfile.write(tmp_path / "clip.wav", wav.numpy(), 16000)
    streamed = model.classify_file(str(tmp_path / "clip.wav"))
    whole = model.classify_batch(wav.unsqueeze(0))
    assert torch.allclose(streamed[0], whole[0], atol=1e-5) and streamed[3] == whole[3]
