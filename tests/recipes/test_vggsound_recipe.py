"""The VGGSound recipe end to end: the real train.py on a tiny generated set."""

import csv
import glob
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import (
    ROOT,  # noqa: E402
    TINY_VGGSOUND,
    kill_after_first_checkpoint,
    tiny_vggsound_folder,
)

TRAIN = os.path.join(ROOT, "recipes", "VGGSound", "train.py")
HPARAMS = os.path.join(ROOT, "hparams", "datar.yaml")
sys.path.insert(0, os.path.join(ROOT, "recipes", "VGGSound"))
sys.path.insert(0, os.path.join(ROOT, "tests"))


TINY = TINY_VGGSOUND
#: Largest change of a class probability allowed against fp32 on the test clips (measured at most 6.4e-4 in
#: bf16 and 5.1e-4 in int8; the ESC-10 models' changes are in README's precision table).
PROBABILITY_TOLERANCE = {"bf16": 0.01, "int8": 0.01}


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    return tiny_vggsound_folder(tmp_path_factory)


def prepare(function, data_folder, save_folder, valid_ratio=0.1):
    """A data set's preparation as the recipes run it."""
    from speechbrain_datar.dataio.prepare import prepare_dataset

    prepare_dataset(
        function, save_folder, dataset_options={"data_folder": data_folder}, valid_ratio=valid_ratio, seed=1234
    )


def command(data_folder, output_folder, epochs, **extra):
    options = dict(TINY, data_folder=data_folder, output_folder=output_folder, number_of_epochs=epochs, **extra)
    return [sys.executable, TRAIN, HPARAMS] + [f"--{k}={v}" for k, v in options.items()]


def run(cmd, cwd, **kwargs):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)


def logged_epochs(output_folder):
    with open(os.path.join(output_folder, "train_log.txt")) as f:
        return [int(m) for m in re.findall(r"^epoch: (\d+),", f.read(), flags=re.M)]


@pytest.fixture(scope="module")
def trained(data_folder, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "exp")
    result = run(command(data_folder, out, 2), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_recipe_writes_manifests_checkpoints_logs_and_reports(trained):
    save = os.path.join(trained, "save")
    for name in (
        "train.json",
        "valid.json",
        "test.json",
        "label_encoder.txt",
        "norm_stats.json",
        "prepare_report.json",
    ):
        assert os.path.isfile(os.path.join(save, name)), name
    with open(os.path.join(save, "prepare_report.json")) as f:
        report = json.load(f)
    assert report["train"]["reasons"] == {"missing": 1, "empty": 1, "silent": 1}
    assert report["test"]["reasons"] == {"unreadable": 1}
    assert report["train"]["kept"] == 30 and report["test"]["kept"] == 12
    assert glob.glob(os.path.join(save, "CKPT+*"))
    assert logged_epochs(trained) == [1, 2]
    with open(os.path.join(trained, "test_metrics.json")) as f:
        metrics = json.load(f)
    assert set(metrics) >= {"loss", "top1", "top5"}
    for name in ("test_predictions.csv", "confusion_matrix.csv", "confusion_matrix.png"):
        assert os.path.getsize(os.path.join(trained, name)) > 0, name
    exported = sorted(os.listdir(os.path.join(trained, "pretrained")))
    assert exported == [
        "classifier.ckpt",
        "embedding_model.ckpt",
        "hyperparams.yaml",
        "label_encoder.ckpt",
        "test_metrics.json",
    ]


@pytest.mark.slow
def test_encoder_classifier_predicts_what_the_recipe_measured(trained, tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier

    classifier = EncoderClassifier.from_hparams(
        source=os.path.join(trained, "pretrained"), savedir=str(tmp_path / "loaded")
    )
    with open(os.path.join(trained, "save", "test.json")) as f:
        test = json.load(f)
    with open(os.path.join(trained, "test_predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(test) == 12
    for row in rows:
        label = classifier.classify_file(test[row["id"]]["path"])[3][0]
        assert label == row["prediction"], row["id"]
    emb = classifier.encode_batch(torch.randn(2, 16000))
    assert emb.shape == (2, 1, 128)


@pytest.mark.slow
def test_each_precision_gives_the_fp32_labels_on_the_test_clips(trained, tmp_path, monkeypatch):
    from speechbrain_datar.inference import precision
    from speechbrain_datar.inference.interfaces import StreamingClassifier

    # bf16 runs here even where the CPU only emulates it (same arithmetic, slower), so that it is tested
    monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
    with open(os.path.join(trained, "save", "test.json")) as f:
        paths = [entry["path"] for entry in json.load(f).values()]
    results = {}
    for name in ("fp32", "bf16", "int8"):
        model = StreamingClassifier.from_hparams(
            source=os.path.join(trained, "pretrained"), savedir=str(tmp_path / name), precision=name
        )
        results[name] = [model.classify_file(path) for path in paths]
        assert model.precision_running == name
    for name, tolerance in (("bf16", PROBABILITY_TOLERANCE["bf16"]), ("int8", PROBABILITY_TOLERANCE["int8"])):
        for clip, reference in zip(results[name], results["fp32"]):
            assert clip[3] == reference[3]
            assert (clip[0].exp() - reference[0].exp()).abs().max() < tolerance


@pytest.mark.slow
def test_long_files_are_classified_by_averaged_sliding_windows(trained, tmp_path):
    import soundfile
    from speechbrain.inference.classifiers import EncoderClassifier

    classifier = EncoderClassifier.from_hparams(
        source=os.path.join(trained, "pretrained"), savedir=str(tmp_path / "loaded")
    )
    with open(os.path.join(trained, "save", "test.json")) as f:
        paths = [e["path"] for e in json.load(f).values()][:4]
    long_wav = torch.cat([torch.from_numpy(soundfile.read(p, dtype="float32")[0]) for p in paths])
    path = str(tmp_path / "long.wav")
    soundfile.write(path, long_wav.numpy(), 16000)
    out_prob, _, _, label = classifier.classify_file(path)
    windows = classifier.encode_batch(long_wav.unsqueeze(0)).valid
    assert windows.shape[1] == 7 and windows.all()  # 4 s, 1 s windows, 0.5 s hop
    assert torch.allclose(out_prob.exp().sum(-1), torch.ones(1), atol=1e-5)
    # a batch of a long and a short file: the short one has only its own window
    short = torch.from_numpy(soundfile.read(paths[0], dtype="float32")[0])
    batch = torch.zeros(2, long_wav.shape[0])
    batch[0], batch[1, : short.shape[0]] = long_wav, short
    probs, _, _, _ = classifier.classify_batch(batch, torch.tensor([1.0, short.shape[0] / long_wav.shape[0]]))
    alone, _, _, _ = classifier.classify_batch(short.unsqueeze(0))
    assert classifier.encode_batch(short.unsqueeze(0)).valid.sum().item() == 1
    assert torch.allclose(probs[1], alone[0], atol=1e-4)


@pytest.mark.slow
def test_visualisation_command_writes_a_png(trained, tmp_path):
    with open(os.path.join(trained, "save", "test.json")) as f:
        path = next(iter(json.load(f).values()))["path"]
    png = str(tmp_path / "views.png")
    result = run(
        [
            sys.executable,
            "-m",
            "speechbrain_datar.visualize",
            "--model",
            os.path.join(trained, "pretrained"),
            "--audio",
            path,
            "--output",
            png,
        ],
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(data_folder, tmp_path):
    out = str(tmp_path / "exp")
    epochs = 12
    cmd = command(data_folder, out, epochs)
    completed = kill_after_first_checkpoint(cmd, ROOT, out)
    counters = [os.path.join(folder, "counter.ckpt") for folder in completed]
    checkpointed = max(int(open(path).read().strip()) for path in counters)
    assert 1 <= checkpointed < epochs
    result = run(cmd, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed_at = int(re.findall(r"Going into epoch (\d+)", result.stderr + result.stdout)[0])
    assert resumed_at == checkpointed + 1
    logged = logged_epochs(out)
    assert logged[-1] == epochs and sorted(set(logged)) == list(range(1, epochs + 1))


@pytest.mark.slow
def test_torchrun_two_processes_end_with_the_same_weights(data_folder, tmp_path):
    """Two gloo processes on CPU, across a coarse-to-fine transition that replaces the patch stem."""
    out = str(tmp_path / "exp")
    cmd = command(data_folder, out, 2, compression="patch", phases="[{factor: 2, epochs: 1}, {factor: 1, epochs: 1}]")
    launcher = os.path.join(ROOT, "tests", "recipe_saving_every_process.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", launcher] + cmd[2:]
    result = run(cmd + ["--distributed_backend=gloo"], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    weights = [torch.load(os.path.join(out, f"weights_rank{rank}.pt")) for rank in (0, 1)]
    assert list(weights[0]) == list(weights[1])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert weights[0]["embedding_model.patch_proj.weight"].shape[-2:] == (4, 4)  # back from the wide phase
    assert "Grad strides do not match" not in result.stderr  # DDP's buckets fit every gradient
    assert os.path.isfile(os.path.join(out, "pretrained", "embedding_model.ckpt"))
    assert re.findall(r"phase: (\d+), factor: (\d+)", open(os.path.join(out, "train_log.txt")).read()) == [
        ("1", "2"),
        ("2", "1"),
    ]


def test_missing_data_folder_is_a_clear_error(tmp_path):
    result = run(command(str(tmp_path / "nowhere"), str(tmp_path / "exp"), 1), cwd=ROOT)
    assert result.returncode != 0
    assert "data_folder" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_wrong_number_of_classes_is_a_clear_error(data_folder, tmp_path):
    result = run(command(data_folder, str(tmp_path / "exp"), 1, n_classes=309), cwd=ROOT)
    assert result.returncode != 0
    assert "--n_classes=6" in result.stderr and "Traceback" not in result.stderr


def test_csv_with_unknown_columns_is_rejected(tmp_path):
    from vggsound_prepare import prepare_vggsound

    (tmp_path / "audio").mkdir()
    (tmp_path / "vggsound.csv").write_text("youtube_id,start,label,split,extra\nabc,1,dog,train,x\n")
    with pytest.raises(ValueError, match="four columns"):
        prepare(prepare_vggsound, str(tmp_path), str(tmp_path / "save"))


def test_unknown_test_labels_and_bad_rows_are_reported(tmp_path):
    import numpy as np
    import soundfile
    from vggsound_prepare import prepare_vggsound

    audio = tmp_path / "audio"
    audio.mkdir()
    rows = [
        ("aaa", 1, "dog", "train"),
        ("bbb", 2, "dog", "train"),
        ("ccc", 3, "cat", "test"),
        ("ddd", 4, "dog", "test"),
    ]
    for ytid, start, _, _ in rows:
        soundfile.write(str(audio / f"{ytid}_{start:06d}.flac"), 0.1 * np.random.randn(8000), 16000)
    lines = [",".join(map(str, r)) for r in rows] + ["eee,notanumber,dog,train", "fff,5,dog,validation"]
    (tmp_path / "vggsound.csv").write_text("\n".join(lines) + "\n")
    prepare(prepare_vggsound, str(tmp_path), str(tmp_path / "save"), valid_ratio=0.5)
    report = json.loads((tmp_path / "save" / "prepare_report.json").read_text())
    assert report["test"]["reasons"] == {"unknown_label": 1}
    assert report["csv"]["reasons"] == {"bad_row": 2}
    test = json.loads((tmp_path / "save" / "test.json").read_text())
    assert list(test) == ["ddd_000004"] and test["ddd_000004"]["path"].endswith(".flac")
    mtime = os.path.getmtime(tmp_path / "save" / "train.json")
    prepare(prepare_vggsound, str(tmp_path), str(tmp_path / "save"), valid_ratio=0.5)
    assert os.path.getmtime(tmp_path / "save" / "train.json") == mtime


@pytest.mark.slow
def test_ast_baseline_runs_on_the_same_recipe(data_folder, tmp_path):
    out = str(tmp_path / "exp")
    cmd = command(data_folder, out, 1)
    cmd[2] = os.path.join(ROOT, "hparams", "ast.yaml")
    result = run(cmd, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "pretrained", "hyperparams.yaml")) as f:
        assert "speechbrain_datar.lobes.models.ast.AST" in f.read()
    assert logged_epochs(out) == [1]


@pytest.mark.slow
def test_recipe_starts_from_an_imagenet_checkpoint(data_folder, tmp_path):
    from dat_v1_reference import make_dat_state_dict

    micro = dict(
        dims=[16, 32, 64, 128],
        depths=[2, 2, 2, 2],
        heads=[1, 2, 4, 8],
        groups=[1, 1, 2, 4],
        spec=[["L", "S"], ["L", "S"], ["L", "D"], ["L", "D"]],
    )
    path = str(tmp_path / "dat_micro.pth")
    torch.save({"model": make_dat_state_dict(micro)}, path)
    out = str(tmp_path / "exp")
    result = run(command(data_folder, out, 1, init_from=path), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "init_report.json")) as f:
        report = json.load(f)
    assert report["left_at_initialisation"] == ["input_adaptor.conv.bias", "input_adaptor.conv.weight"]
    assert "cls_head.weight" in report["ignored_from_checkpoint"]


@pytest.mark.slow
def test_a_bug_inside_training_keeps_its_traceback(data_folder, tmp_path):
    """Only the project's DataError ends in one line; a RuntimeError inside training propagates whole.

    The stand-in bug: an augmentation that divides features [batch, time, n_mels] by lengths [batch].
    """
    broken = "!name:operator.truediv"
    result = run(command(data_folder, str(tmp_path / "exp"), 1, feature_augment=broken, lr=0.00001), cwd=ROOT)
    output = result.stdout + result.stderr  # SpeechBrain logs uncaught exceptions to the console and log.txt
    assert result.returncode != 0
    assert "Traceback" in output and "compute_forward" in output
    assert "RuntimeError: The size of tensor a" in output
    assert "fine-tuning rate" in output  # from scratch at lr 1e-5: the one-line warning


def logged_lr(output_folder):
    """Learning rate at the end of each epoch; the last line of an epoch logged twice wins."""
    with open(os.path.join(output_folder, "train_log.txt")) as f:
        return {int(e): lr for e, lr in re.findall(r"^epoch: (\d+), lr: ([0-9.e+-]+)", f.read(), flags=re.M)}


@pytest.mark.slow
def test_warmup_cosine_schedule_resumes_exactly_and_restarts_at_a_phase_change(data_folder, tmp_path):
    schedule = dict(
        warmup_epochs=1,
        lr_decay="cosine",
        compression="avgpool",
        phases="[{factor: 2, epochs: 2}, {factor: 1, epochs: 2}]",
    )
    straight = str(tmp_path / "straight")
    result = run(command(data_folder, straight, 4, **schedule), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lrs = logged_lr(straight)
    # warm-up for one epoch, cosine over number_of_epochs; the second phase restarts the schedule
    peak, after_two_epochs = 0.001, 0.001 * 0.5 * (1 + math.cos(math.pi / 3))
    assert [float(lrs[e]) for e in (1, 2, 3, 4)] == pytest.approx([peak, after_two_epochs] * 2, rel=0.01)
    killed = str(tmp_path / "killed")
    cmd = command(data_folder, killed, 4, **schedule)
    kill_after_first_checkpoint(cmd, ROOT, killed)
    result = run(cmd, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert logged_lr(killed) == lrs


@pytest.mark.slow
def test_distillation_from_an_export_survives_a_kill_scores_once_and_travels_in_shards(trained, data_folder, tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier

    from speechbrain_datar.dataio.audio import load_clip
    from speechbrain_datar.training.distillation import SCORES_FILE, TeacherScores

    teacher = os.path.join(trained, "pretrained")
    # distill_weight 0: bitwise the training without a teacher
    zero = str(tmp_path / "zero")
    result = run(command(data_folder, zero, 2, teacher=teacher, distill_weight=0.0), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("embedding_model.ckpt", "classifier.ckpt"):
        with open(os.path.join(zero, "pretrained", name), "rb") as a, open(os.path.join(teacher, name), "rb") as b:
            assert a.read() == b.read(), name
    # from shards, killed after its first checkpoint and resumed: the scores are computed once
    out = str(tmp_path / "student")
    cmd = command(data_folder, out, 2, teacher=teacher, data_format="shards", shard_megabytes=0.2)
    kill_after_first_checkpoint(cmd, ROOT, out)
    scores_path = os.path.join(out, "save", SCORES_FILE)
    written = os.stat(scores_path).st_mtime_ns
    result = run(cmd, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert logged_epochs(out) == [1, 2]
    assert os.stat(scores_path).st_mtime_ns == written
    assert "teacher scores: reusing" in open(os.path.join(out, "log.txt")).read()
    scores = TeacherScores.load(scores_path)
    in_shards = TeacherScores.load(os.path.join(out, "save", "shards", SCORES_FILE))
    assert in_shards.ids == scores.ids and in_shards.fingerprint == scores.fingerprint
    assert (in_shards.probabilities["label"] == scores.probabilities["label"]).all()
    # the scores are the teacher export's own classification of each training clip
    model = EncoderClassifier.from_hparams(source=teacher, savedir=str(tmp_path / "teacher"))
    entries = json.load(open(os.path.join(out, "save", "train.json")))
    clip_id = scores.ids[0]
    wav = load_clip(entries[clip_id]["path"], 16000, entries[clip_id].get("start"), entries[clip_id].get("stop"))
    expected = model.classify_batch(wav.unsqueeze(0))[0].exp()
    assert torch.allclose(scores.batch([clip_id])["label"], expected.reshape(1, -1), atol=1e-5)
    # the student is exported like any model: it loads and classifies without its teacher
    student = EncoderClassifier.from_hparams(source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "s"))
    assert student.classify_batch(wav.unsqueeze(0))[3][0] in {e["label"] for e in entries.values()}


@pytest.mark.parametrize(
    "option, value", [("export_precision", "int4"), ("data_format", "tar"), ("frame_sampling", "random")]
)
def test_an_option_the_end_of_a_run_uses_is_checked_before_anything_runs(data_folder, tmp_path, option, value):
    out = str(tmp_path / "typo")
    result = run(command(data_folder, out, 1, **{option: value}), cwd=ROOT)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --{option} must be one of") and value in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(out, "save", "train.json"))  # not even prepared
