"""The recipes on video files: every broken kind reported, Kinetics and EPIC on their videos."""

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from speechbrain_datar.dataio.synthetic import (
    make_epic_kitchens_like,
    make_vggsound_like,
)

sys.path.insert(0, os.path.join(ROOT, "recipes", "VGGSound"))
sys.path.insert(0, os.path.join(ROOT, "recipes", "EpicKitchens100"))


def run_recipe(recipe, hparams, data_folder, out, *extra):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "recipes", recipe, "train.py"),
        os.path.join(ROOT, "hparams", hparams),
        f"--data_folder={data_folder}",
        f"--output_folder={out}",
        "--preset=micro",
        "--clip_seconds=1.0",
        "--eval_hop_seconds=0.5",
        "--batch_size=6",
        "--num_workers=0",
        "--lr=0.001",
        "--number_of_epochs=1",
        "--stats_max_clips=10",
        "--valid_ratio=0.2",
    ] + list(extra)
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.load(open(os.path.join(out, "save", "prepare_report.json")))


@pytest.mark.slow
def test_vggsound_recipe_on_mp4_clips_with_every_broken_kind_reported(tmp_path):
    from speechbrain_datar.inference.interfaces import StreamingClassifier

    data = make_vggsound_like(str(tmp_path / "data"), train_per_class=4, test_per_class=1, seconds=1.0, video=True)
    report = run_recipe("VGGSound", "datar.yaml", os.path.dirname(data["csv"]), str(tmp_path / "exp"))
    assert report["train"]["reasons"] == {"missing": 1, "empty": 1, "silent": 1, "no_audio_stream": 1}
    assert report["test"]["reasons"] == {"unreadable": 1}
    assert report["train"]["kept"] == 6 * 4 + 2  # clips without (enough) video serve an audio recipe
    test = json.load(open(tmp_path / "exp" / "save" / "test.json"))
    assert all(entry["path"].endswith(".mp4") for entry in test.values())
    classifier = StreamingClassifier.from_hparams(
        source=str(tmp_path / "exp" / "pretrained"), savedir=str(tmp_path / "m")
    )
    with open(tmp_path / "exp" / "test_predictions.csv") as f:
        predictions = {row["id"]: row["prediction"] for row in csv.DictReader(f)}
    for clip_id, entry in test.items():  # the same label as the recipe's test, from the mp4 itself
        assert classifier.classify_file(entry["path"])[3][0] == predictions[clip_id]
    # a recipe that reads frames needs the video stream too
    from vggsound_prepare import prepare_vggsound

    from speechbrain_datar.dataio.prepare import prepare_dataset

    save = tmp_path / "frames_save"
    prepare_dataset(
        prepare_vggsound,
        str(save),
        dataset_options={"data_folder": os.path.dirname(data["csv"]), "need_video": True},
        valid_ratio=0.2,
        seed=1,
    )
    reasons = json.load(open(save / "prepare_report.json"))["train"]["reasons"]
    assert reasons["no_video_stream"] == 1 and reasons["too_short"] == 1


@pytest.mark.slow
def test_kinetics_and_epic_recipes_on_their_videos(tmp_path):
    from speechbrain_datar.dataio.synthetic import make_kinetics_sounds_like

    kinetics = make_kinetics_sounds_like(str(tmp_path / "ks"), train_per_class=4, test_per_class=1, video=True)
    report = run_recipe("KineticsSounds", "KineticsSounds/datar.yaml", kinetics, str(tmp_path / "ks_exp"))
    assert report["train"]["kept"] == 6 * 4 and report["test"]["reasons"] == {"missing": 1}
    epic = make_epic_kitchens_like(str(tmp_path / "epic"), media="video")
    report = run_recipe("EpicKitchens100", "EpicKitchens100/datar.yaml", epic, str(tmp_path / "epic_exp"))
    assert report["train"]["kept"] == 36 and report["test"]["reasons"]["missing"] == 1
    train = json.load(open(tmp_path / "epic_exp" / "save" / "train.json"))
    assert all(entry["path"].endswith(".MP4") and "/videos/" in entry["path"] for entry in train.values())
