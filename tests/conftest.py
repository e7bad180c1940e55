"""Shared fixtures for the speechbrain-datar tests."""

import glob
import os
import signal
import subprocess
import time

import pytest
import torch

#: The repository, its recipes and hparams, and the tests' own data (exports of earlier versions).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
HPARAMS = os.path.join(ROOT, "hparams")
TEST_DATA = os.path.join(ROOT, "tests", "data")
HELPERS = os.path.join(ROOT, "tests")


#: The recipe tests' tiny run of the VGGSound recipe: DATAR-micro on 1 s crops of a generated set.
TINY_VGGSOUND = {
    "preset": "micro",
    "n_classes": 6,
    "clip_seconds": 1.0,
    "eval_hop_seconds": 0.5,
    "batch_size": 6,
    "lr": 0.001,
    "num_workers": 0,
    "valid_ratio": 0.2,
    "stats_max_clips": 20,
}


#: The same tiny run for the recipes' own hparams files, as command-line options.
TINY_RECIPE_OPTIONS = [
    "--preset=micro",
    "--clip_seconds=1.0",
    "--eval_hop_seconds=0.5",
    "--batch_size=6",
    "--num_workers=0",
    "--stats_max_clips=20",
    "--valid_ratio=0.2",
]


def tiny_vggsound_folder(tmp_path_factory, seconds=1.0):
    """A generated set in VGGSound's layout: six classes, 5 training and 2 test clips each."""
    from speechbrain_datar.dataio.synthetic import make_vggsound_like

    folder = tmp_path_factory.mktemp("vggsound")
    make_vggsound_like(str(folder), train_per_class=5, test_per_class=2, seconds=seconds)
    return str(folder)


@pytest.fixture(autouse=True)
def no_native_bf16(monkeypatch):
    """``precision: auto``, the exports' default, runs fp32 in every test whatever this machine multiplies
    natively: the tests compare numbers within fp32's rounding, and a test of bf16 asks for it (it fakes the
    CPU's flags or ``bf16_supported`` itself)."""
    from speechbrain_datar.inference import precision

    flags = precision.cpu_flags() - set(precision.NATIVE_BF16_FLAGS)
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)


def available_devices():
    """CPU always; CUDA as well when this machine has it."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def randomise_offsets(model, std=1.0):
    """Gives every offset generator large random output weights, so that offsets are far from zero."""
    from speechbrain_datar.nnet.deformable_attention import OffsetGenerator

    for module in model.modules():
        if isinstance(module, OffsetGenerator):
            torch.nn.init.normal_(module[3].weight, std=std)
    return model


def kill_after_first_checkpoint(cmd, cwd, output_folder, timeout=300):
    """Starts a training command and kills it (SIGKILL) once its first complete checkpoint exists.

    Returns the paths of the complete checkpoints' folders at that moment.
    """
    process = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    completed = os.path.join(output_folder, "save", "CKPT+*", "CKPT.yaml")
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and not glob.glob(completed):
            assert process.poll() is None, "training ended before it could be interrupted"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return [os.path.dirname(path) for path in glob.glob(completed)]


@pytest.fixture
def decoded_samples(monkeypatch):
    """A list that receives the number of samples of every audio frame a container read decodes."""
    import speechbrain_datar.dataio.decoding as decoding

    counts = []
    frames = decoding.ContainerSource._frames

    def counting(self, seek_seconds):
        for exact, samples in frames(self, seek_seconds):
            counts.append(samples.shape[1])
            yield exact, samples

    monkeypatch.setattr(decoding.ContainerSource, "_frames", counting)
    return counts


@pytest.fixture(scope="session")
def micro_audio_classifier(tmp_path_factory):
    """A micro DATAR exported as the recipes export it (32 mel bins, 10 s windows every 5 s, 5 classes), loaded
    with ``StreamingClassifier``; ``exported_folder`` is its folder."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_datar.dataio.normalization import DatasetNormalization
    from speechbrain_datar.inference.interfaces import StreamingClassifier
    from speechbrain_datar.lobes.models.datar import DATAR
    from speechbrain_datar.nnet.classifier import Classifier
    from speechbrain_datar.pretrained.export import export_classifier

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("export")
    labels = CategoricalEncoder()
    labels.update_from_iterable([f"class{i}" for i in range(5)])
    encoder = DATAR("micro", n_mels=32, reference_frames=1001).eval()
    features = {"sample_rate": 16000, "n_mels": 32, "n_fft": 512, "win_length": 25, "hop_length": 10}
    export_classifier(
        str(folder / "model"),
        encoder=encoder,
        head=Classifier(encoder.embedding_dim, 5).eval(),
        normalizer=DatasetNormalization(mean=-5.0, std=3.0),
        label_encoders={"label": labels},
        feature_options=features,
        window_frames=1001,
        hop_frames=501,
        max_windows=8,
    )
    model = StreamingClassifier.from_hparams(source=str(folder / "model"), savedir=str(folder / "loaded"))
    model.exported_folder = str(folder / "model")
    return model
