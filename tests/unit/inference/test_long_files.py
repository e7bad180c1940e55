"""Long recordings: the exported model decodes a file as a stream and gives the whole-file result."""

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.streaming import StreamedAudio
from speechbrain_datar.dataio.synthetic import write_video


@pytest.fixture
def classifier(micro_audio_classifier):
    """A micro DATAR exported as the recipes export (10 s windows, 5 s hop, 8 windows per encoder call)."""
    return micro_audio_classifier


def recording(seconds, rate, seed=0):
    """Noise whose loudness and colour change over time, so that windows differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (
        0.2 * rng.standard_normal(t.shape) * (1.2 + np.sin(t / 7.0))
        + 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(t / 3.0) > 0)
    ).astype(np.float32) / 3


def test_streamed_classification_of_a_five_minute_file_equals_the_whole_file_result(classifier, tmp_path):
    path = str(tmp_path / "five_minutes.wav")
    soundfile.write(path, recording(300.0, 16000), 16000)
    wav = load_clip(path, 16000).unsqueeze(0)
    with torch.no_grad():
        whole = classifier.classify_batch(wav)
        assert classifier.encode_batch(wav).valid.shape == (1, 59)  # 10 s windows every 5 s
    streamed = classifier.classify_file(path)
    assert torch.allclose(streamed[0], whole[0], atol=1e-5) and streamed[3] == whole[3]
    assert classifier.last_realtime_factor > 0


@pytest.mark.parametrize("kind", ["44.1 kHz stereo flac", "mkv with flac sound"])
def test_blocks_read_the_samples_of_the_whole_file(tmp_path, kind):
    """Blocks of another rate are resampled with a margin, so that they join without seams."""
    rate = 44100 if kind.startswith("44") else 16000
    wav = recording(7.3, rate, seed=1)
    if kind.startswith("44"):
        path = str(tmp_path / "clip.flac")
        soundfile.write(path, np.stack([wav, 0.5 * wav], axis=1), rate)
    else:
        path = str(tmp_path / "clip.mkv")
        write_video(path, wav, rate, None, audio_codec="flac")
    whole = load_clip(path, 16000)
    stream = StreamedAudio(path, 16000, block_seconds=1.0)
    assert abs(stream.n_samples - whole.shape[0]) <= 1
    pieces = [stream.read(first, first + 3000)[0] for first in range(0, whole.shape[0], 3000)]
    joined = torch.cat(pieces)[: whole.shape[0]]
    assert torch.allclose(joined, whole, atol=1e-5)
