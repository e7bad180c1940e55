"""MBT and late fusion in the real recipes: accuracy against single modalities, EPIC's heads, and the exported
model that classifies video files (falling back to one modality)."""

import csv
import json
import math
import os
import re
import subprocess
import sys

import pytest
import soundfile
import torch
from conftest import ROOT, kill_after_first_checkpoint

from speechbrain_datar.dataio.synthetic import (
    AUDIO_VISUAL_CLASSES,
    index_frames,
    make_epic_kitchens_like,
    make_vggsound_like,
    write_video,
)

MICRO = ["--preset=micro", "--frame_size=32", "--num_workers=0", "--stats_max_clips=16", "--valid_ratio=0.1"]
#: Settings that train the micro model on the generated set (the paper's SGD at lr 0.5, mixup and
#: stochastic depth are for ViT-B on real data).
SYNTHETIC_TRAINING = [
    "--lr=0.002",
    "--opt_class=!name:torch.optim.AdamW",
    "--mixup_alpha=0",
    "--drop_path_rate=0.0",
    "--freq_mask_bins=12",
    "--batch_size=16",
]


def run_recipe(recipe, hparams, data_folder, out, *extra):
    cmd = (
        [
            sys.executable,
            os.path.join(ROOT, "recipes", recipe, "train.py"),
            os.path.join(ROOT, "hparams", hparams),
            f"--data_folder={data_folder}",
            f"--output_folder={out}",
        ]
        + MICRO
        + list(extra)
    )
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.load(open(os.path.join(out, "test_metrics.json")))


def predictions(out):
    with open(os.path.join(out, "test_predictions.csv")) as f:
        return {row["id"]: row["prediction"] for row in csv.DictReader(f)}


@pytest.mark.slow
def test_audio_visual_mbt_beats_each_modality_alone_and_its_export_reads_video_files(tmp_path):
    """Sound alone tells tones from chirps, sight alone squares from stripes: only both tell the four
    classes apart. 3 s clips, 2 s span: evaluation averages 4 crops."""
    from speechbrain_datar.dataio.audio import load_clip
    from speechbrain_datar.inference.interfaces import AudioVisualClassifier

    data = make_vggsound_like(
        str(tmp_path / "data"),
        train_per_class=24,
        test_per_class=12,
        seconds=3.0,
        classes=AUDIO_VISUAL_CLASSES,
        include_bad_clips=False,
        video=True,
    )
    folder = os.path.dirname(data["csv"])
    settings = SYNTHETIC_TRAINING + ["--clip_seconds=2.0", "--n_frames=4", "--number_of_epochs=30"]
    top1 = {}
    for name, modalities in (("audio", "[audio]"), ("video", "[video]"), ("both", "[audio, video]")):
        out = str(tmp_path / name)
        top1[name] = run_recipe("VGGSound", "mbt.yaml", folder, out, f"--modalities={modalities}", *settings)["top1"]
    print("test top-1:", top1)
    assert top1["both"] >= max(top1["audio"], top1["video"]) + 15.0, top1

    out = str(tmp_path / "both")
    model = AudioVisualClassifier.from_hparams(source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "m"))
    test = json.load(open(os.path.join(out, "save", "test.json")))
    expected = predictions(out)
    for clip_id, entry in test.items():  # the recipe's label, from the mp4 itself
        result = model.classify_file(entry["path"])["label"]  # by head, as every interface's results
        assert result.text_lab[0] == expected[clip_id] and result.modalities == ("audio", "video")
    # a file without picture, and a video without sound, are classified from what they have
    path = next(iter(test.values()))["path"]
    wav = load_clip(path, 16000)
    soundfile.write(str(tmp_path / "sound.wav"), wav.numpy(), 16000)
    write_video(str(tmp_path / "silent.mp4"), None, 16000, index_frames(75, 32), audio_codec=None)
    for file, used in (("sound.wav", ("audio",)), ("silent.mp4", ("video",))):
        out_prob, score, index, label = result = model.classify_file(str(tmp_path / file))["label"]
        assert result.modalities == used and label[0] in AUDIO_VISUAL_CLASSES and out_prob.shape == (1, 4)


@pytest.mark.slow
def test_late_fusion_and_epic_heads_in_their_recipes(tmp_path):
    from speechbrain_datar.inference.interfaces import AudioVisualClassifier
    from speechbrain_datar.lobes.models.datar import DATAR

    data = make_vggsound_like(
        str(tmp_path / "data"),
        train_per_class=4,
        test_per_class=2,
        seconds=1.0,
        classes=AUDIO_VISUAL_CLASSES,
        include_bad_clips=False,
        video=True,
    )
    out = str(tmp_path / "late")
    metrics = run_recipe(
        "VGGSound",
        "late_fusion.yaml",
        os.path.dirname(data["csv"]),
        out,
        "--clip_seconds=1.0",
        "--n_frames=2",
        "--number_of_epochs=1",
        "--audio_encoder_options={preset: micro}",
        "--batch_size=8",
    )
    assert "top1" in metrics
    model = AudioVisualClassifier.from_hparams(source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "m"))
    assert isinstance(model.mods.embedding_model.encoder.audio_encoder, DATAR)
    test = json.load(open(os.path.join(out, "save", "test.json")))
    expected = predictions(out)
    for clip_id, entry in test.items():
        assert model.classify_file(entry["path"])["label"].text_lab[0] == expected[clip_id]

    epic = make_epic_kitchens_like(str(tmp_path / "epic"), media="video")
    out = str(tmp_path / "epic_exp")
    metrics = run_recipe(
        "EpicKitchens100",
        "EpicKitchens100/mbt.yaml",
        epic,
        out,
        "--clip_seconds=1.0",
        "--n_frames=4",
        "--number_of_epochs=1",
        "--batch_size=6",
    )
    assert {"verb_top1", "noun_top1", "action_top1"} <= set(metrics)
    model = AudioVisualClassifier.from_hparams(source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "e"))
    video = next(iter(json.load(open(os.path.join(out, "save", "test.json"))).values()))["path"]
    heads = model.classify_file(video)
    assert set(heads) == {"verb", "noun"} and heads["verb"].modalities == ("audio", "video")


@pytest.mark.slow
def test_mbt_trains_in_the_recipe_on_audio_and_frames(tmp_path):
    """The shared Brain with frames: modality mixup, per-modality losses, coarse-to-fine on the audio stream,
    and a killed run that resumes in its phase."""
    data = make_vggsound_like(
        str(tmp_path / "data"),
        train_per_class=4,
        test_per_class=2,
        seconds=1.0,
        classes=AUDIO_VISUAL_CLASSES,
        include_bad_clips=False,
        video=True,
    )
    out = tmp_path / "exp"
    cmd = [
        sys.executable,
        os.path.join(ROOT, "recipes", "VGGSound", "train.py"),
        os.path.join(ROOT, "hparams", "mbt.yaml"),
        f"--data_folder={os.path.dirname(data['csv'])}",
        f"--output_folder={out}",
        "--preset=micro",
        "--clip_seconds=1.0",
        "--frame_size=32",
        "--n_frames=2",
        "--batch_size=4",
        "--lr=0.001",
        "--num_workers=0",
        "--valid_ratio=0.25",
        "--modality_mixup=True",
        "--stats_max_clips=8",
        "--phases=[{factor: 4, epochs: 1}, {factor: 1, epochs: 1}]",
    ]
    kill_after_first_checkpoint(cmd, ROOT, str(out))
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = open(out / "train_log.txt").read()
    assert re.findall(r"epoch: (\d+), .*phase: (\d+), factor: (\d+)", log) == [("1", "1", "4"), ("2", "2", "1")]
    exported = torch.load(out / "pretrained" / "embedding_model.ckpt")
    assert exported["pos_embed.audio"].shape[1] == 1 + 8 * 6  # 128 mel bins, 101 frames: the full grid again
    metrics = json.load(open(out / "test_metrics.json"))
    assert set(metrics) >= {"loss", "top1"} and math.isfinite(metrics["loss"])
    # one pooled output for two differently mixed modalities has no target: refused, in one line
    pooled = [arg.replace(str(out), str(tmp_path / "pooled")) for arg in cmd[:-1]]
    pooled += ["--pooling=mean", "--mixup_alpha=0.3", "--mixup_prob=1.0", "--number_of_epochs=1"]
    refused = subprocess.run(pooled, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "modality_mixup needs one output per modality" in refused.stderr
    assert "Traceback" not in refused.stderr
