"""Inference in fp32, bf16 and int8: chosen at load time or written by the export, the same labels, fallbacks."""

import logging

import pytest
import soundfile
import torch
from speechbrain.inference.classifiers import EncoderClassifier

from speechbrain_datar.inference import precision as precision_module
from speechbrain_datar.inference.interfaces import StreamingClassifier
from speechbrain_datar.inference.precision import PrecisionRunner, effective_precision
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.pretrained.export import export_classifier


@pytest.fixture
def native_bf16(monkeypatch):
    """Lets bf16 run on this CPU (emulated where it has no bf16 instructions: the same arithmetic, slower)."""
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: True)


def export_copy(micro_audio_classifier, folder, precision):
    """The fixture's model exported again, asking for ``precision``."""
    from speechbrain_datar.dataio.normalization import DatasetNormalization

    model = micro_audio_classifier
    export_classifier(
        str(folder),
        encoder=model.mods.embedding_model.encoder,
        head=model.mods.classifier.classifier,
        normalizer=DatasetNormalization(mean=-5.0, std=3.0),
        label_encoders=model.label_encoders,
        feature_options={"sample_rate": 16000, "n_mels": 32, "n_fft": 512, "win_length": 25, "hop_length": 10},
        window_frames=1001,
        hop_frames=501,
        precision=precision,
    )
    return str(folder)


def test_the_runner_keeps_the_encoders_state_dict_and_requantizes_after_loading():
    encoder = DATAR("micro", n_mels=32).eval()
    keys = list(encoder.state_dict())
    runner = PrecisionRunner(encoder, "int8")
    feats = torch.randn(2, 120, 32)
    before = runner(feats, torch.tensor([1.0, 0.5]))
    assert list(encoder.state_dict()) == keys and runner.running == "int8"
    other = DATAR("micro", n_mels=32).state_dict()
    encoder.load_state_dict(other)
    after = runner(feats, torch.tensor([1.0, 0.5]))
    assert not torch.allclose(before, after)  # the new weights, quantized again
    assert (after - encoder(feats, torch.tensor([1.0, 0.5]))).abs().max() < 0.1


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_every_precision_keeps_masking_and_finite_values(precision, native_bf16):
    # padded clips in a batch: the short clip's embedding equals its embedding alone, in every precision
    encoder = DATAR("micro", n_mels=32).eval()
    runner = PrecisionRunner(encoder, precision)
    long, short = torch.randn(1, 200, 32), torch.randn(1, 90, 32)
    batch = torch.zeros(2, 200, 32)
    batch[0], batch[1, :90] = long[0], short[0]
    with torch.no_grad():
        together = runner(batch, torch.tensor([1.0, 90 / 200]))
        alone = runner(short, None)
    assert runner.running == precision and torch.isfinite(together).all()
    assert together.dtype == torch.float32
    # bf16 rounds differently in another batch shape; int8 quantizes each call's activations on its own range
    assert (together[1] - alone[0]).abs().max() < (0.05 if precision == "bf16" else 0.2)


def test_precision_chosen_at_load_time_and_written_by_the_export(micro_audio_classifier, tmp_path, native_bf16):
    wav = (0.1 * torch.randn(16000 * 12)).clamp(-1, 1)
    path = str(tmp_path / "clip.wav")
    soundfile.write(path, wav.numpy(), 16000)
    fp32 = micro_audio_classifier.classify_file(path)
    int8_folder = export_copy(micro_audio_classifier, tmp_path / "int8", "int8")
    with open(f"{int8_folder}/hyperparams.yaml") as f:
        assert "precision: int8" in f.read()
    # SpeechBrain's own EncoderClassifier runs the precision the export wrote
    plain = EncoderClassifier.from_hparams(source=int8_folder, savedir=str(tmp_path / "sb"))
    out_prob, _, _, label = plain.classify_batch(wav.unsqueeze(0))
    assert plain.mods.embedding_model.runner.running == "int8"
    assert label == fp32[3]
    assert (out_prob.exp() - fp32[0].exp()).abs().max() < 0.05
    # the streaming interface: the exported precision, or another chosen at load time
    for asked in ("int8", "bf16", "fp32"):
        model = StreamingClassifier.from_hparams(source=int8_folder, savedir=str(tmp_path / asked), precision=asked)
        streamed = model.classify_file(path, block_seconds=3.0)
        assert model.precision_running == asked
        assert streamed[3] == fp32[3]
        assert (streamed[0].exp() - fp32[0].exp()).abs().max() < 0.05
        if asked == "fp32":
            assert torch.equal(streamed[0], fp32[0])
    probs = model.timeline(path)["label"].probs  # timelines go through the same runner
    assert probs.shape[0] > 0


def test_a_cpu_without_bf16_falls_back_to_fp32_with_a_logged_message(micro_audio_classifier, monkeypatch, caplog):
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: False)
    wav = 0.1 * torch.randn(1, 16000 * 3)
    fp32 = micro_audio_classifier.classify_batch(wav)
    micro_audio_classifier.set_precision("bf16")
    try:
        with caplog.at_level(logging.WARNING, logger="speechbrain_datar.inference.precision"):
            out = micro_audio_classifier.classify_batch(wav)
    finally:
        micro_audio_classifier.set_precision("fp32")
    assert micro_audio_classifier.precision_running == "fp32"
    assert "no native bfloat16 arithmetic" in caplog.text and "running in fp32" in caplog.text
    assert torch.equal(out[0], fp32[0])


def test_int8_on_a_gpu_and_unknown_precisions(caplog):
    with caplog.at_level(logging.WARNING, logger="speechbrain_datar.inference.precision"):
        assert effective_precision("int8", torch.device("cuda")) == "fp32"
    assert "CPU only" in caplog.text
    with pytest.raises(ValueError, match="precision must be one of"):
        PrecisionRunner(DATAR("micro", n_mels=32), "fp16")


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "avx512f", "avx512_bf16"}, "bf16"), ({"avx2", "amx_bf16", "amx_tile"}, "bf16"), ({"avx2"}, "fp32")],
)
def test_auto_reads_the_cpus_flags_and_logs_its_choice_once(monkeypatch, caplog, flags, expected):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(precision_module, "_auto_logged", set())
    with caplog.at_level(logging.INFO, logger="speechbrain_datar.inference.precision"):
        assert effective_precision("auto", torch.device("cpu")) == expected
        assert effective_precision("auto", torch.device("cpu")) == expected
    assert caplog.text.count("precision auto") == 1 and f"auto: {expected} on cpu" in caplog.text
    runner = PrecisionRunner(DATAR("micro", n_mels=32).eval(), "auto")
    runner(torch.randn(1, 120, 32))
    assert runner.running == expected


def test_speechbrains_run_option_chooses_the_precision(micro_audio_classifier, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    folder = micro_audio_classifier.exported_folder
    for asked in ("bf16", "fp32"):
        model = StreamingClassifier.from_hparams(
            source=folder, savedir=str(tmp_path / asked), run_opts={"precision": asked}
        )
        model.classify_batch(0.1 * torch.randn(1, 16000 * 3))
        assert model.precision_running == asked
    # the keyword wins over the run option
    model = StreamingClassifier.from_hparams(
        source=folder, savedir=str(tmp_path / "both"), run_opts={"precision": "bf16"}, precision="fp32"
    )
    model.classify_batch(0.1 * torch.randn(1, 16000 * 3))
    assert model.precision_running == "fp32"
