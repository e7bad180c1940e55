"""Kinetics-Sounds and EPIC-KITCHENS-100: the real train.py on generated sets in the official layouts."""

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY_RECIPE_OPTIONS

sys.path.insert(0, os.path.join(ROOT, "recipes", "EpicKitchens100"))
sys.path.insert(0, os.path.join(ROOT, "recipes", "KineticsSounds"))


TINY = [*TINY_RECIPE_OPTIONS, "--lr=0.001", "--number_of_epochs=2"]


def train(recipe, data_folder, output_folder, *extra):
    """Runs a recipe from its own hparams file (no class counts on the command line)."""
    cmd = (
        [
            sys.executable,
            os.path.join(ROOT, "recipes", recipe, "train.py"),
            os.path.join(ROOT, "hparams", recipe, "datar.yaml"),
            f"--data_folder={data_folder}",
            f"--output_folder={output_folder}",
        ]
        + TINY
        + list(extra)
    )
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_kinetics_sounds_recipe(tmp_path):
    from kinetics_sounds_prepare import read_class_list
    from speechbrain.inference.classifiers import EncoderClassifier

    from speechbrain_datar.dataio.synthetic import KINETICS_SOUNDS_DEMO, make_kinetics_sounds_like

    data = make_kinetics_sounds_like(str(tmp_path / "ks"), train_per_class=5, test_per_class=2)
    out = str(tmp_path / "exp")
    # also: bf16 mixed precision through SpeechBrain's own flag, and mixup
    train("KineticsSounds", data, out, "--precision=bf16", "--mixup_alpha=0.5", "--mixup_prob=1.0")
    report = json.load(open(os.path.join(out, "save", "prepare_report.json")))
    assert report["rows_of_other_classes"] == 2 * (5 + 2)
    assert report["test"]["reasons"] == {"missing": 1}
    assert len(report["listed_classes_not_in_annotations"]) == len(read_class_list()) - 6
    assert set(
        json.load(open(os.path.join(out, "save", "test.json")))[k]["label"]
        for k in json.load(open(os.path.join(out, "save", "test.json")))
    ) == set(KINETICS_SOUNDS_DEMO)
    metrics = json.load(open(os.path.join(out, "test_metrics.json")))
    assert {"top1", "top5"} <= set(metrics)
    assert os.path.isfile(os.path.join(out, "train.py"))
    classifier = EncoderClassifier.from_hparams(source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "m"))
    rows = list(csv.DictReader(open(os.path.join(out, "test_predictions.csv"))))
    test = json.load(open(os.path.join(out, "save", "test.json")))
    assert all(classifier.classify_file(test[r["id"]]["path"])[3][0] == r["prediction"] for r in rows)


def test_kinetics_annotation_with_unknown_columns_is_rejected(tmp_path):
    from kinetics_sounds_prepare import prepare_kinetics_sounds

    from speechbrain_datar.dataio.prepare import prepare_dataset

    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.csv").write_text("class,id,start\nsinging,abc,0\n")
    with pytest.raises(ValueError, match="missing \\['label', 'youtube_id', 'time_start', 'time_end'\\]"):
        prepare_dataset(
            prepare_kinetics_sounds,
            str(tmp_path / "save"),
            dataset_options={"data_folder": str(tmp_path)},
            valid_ratio=0.1,
            seed=1234,
        )


@pytest.mark.slow
def test_epic_kitchens_recipe_with_two_heads(tmp_path):
    from speechbrain_datar.dataio.audio import load_clip
    from speechbrain_datar.dataio.synthetic import EPIC_NOUNS, EPIC_VERBS, make_epic_kitchens_like
    from speechbrain_datar.inference.interfaces import MultiHeadAudioClassifier

    data = make_epic_kitchens_like(str(tmp_path / "epic"))
    out = str(tmp_path / "exp")
    result = train("EpicKitchens100", data, out)
    save = os.path.join(out, "save")
    report = json.load(open(os.path.join(save, "prepare_report.json")))
    assert report["test"]["reasons"] == {
        "bad_timestamp": 1,
        "stop_before_start": 1,
        "beyond_end": 1,
        "missing": 1,
        "verb_without_training_sample": 1,
    }
    assert report["classes_without_training_data"] == {"verb": ["11"], "noun": []}
    # official ids are the labels; timestamps are parsed exactly
    train_manifest = json.load(open(os.path.join(save, "train.json")))
    first = train_manifest.get("P01_01_0") or json.load(open(os.path.join(save, "valid.json")))["P01_01_0"]
    assert (first["start"], first["stop"], first["verb"], first["noun"]) == (0.8, 1.8, 0, 1)
    verbs = {e["verb"] for e in train_manifest.values()}
    assert verbs == set(EPIC_VERBS)
    names = json.load(open(os.path.join(out, "pretrained", "class_names.json")))
    assert names["verb"]["8"] == "cut" and names["noun"]["10"] == "knife"
    metrics = json.load(open(os.path.join(out, "test_metrics.json")))
    assert {"verb_top1", "verb_top5", "noun_top1", "action_top1"} <= set(metrics)
    assert (
        "action_top1" in result.stderr + result.stdout
        or "action_top1" in open(os.path.join(out, "train_log.txt")).read()
    )

    classifier = MultiHeadAudioClassifier.from_hparams(
        source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "m")
    )
    test = json.load(open(os.path.join(save, "test.json")))
    for key in ("verb", "noun"):
        rows = list(csv.DictReader(open(os.path.join(out, f"test_predictions_{key}.csv"))))
        assert len(rows) == len(test) == 12
        for row in rows:
            entry = test[row["id"]]
            wav = load_clip(entry["path"], 16000, entry["start"], entry["stop"])
            predicted = classifier.classify_batch(wav.unsqueeze(0))[key][3][0]
            assert str(predicted) == row["prediction"]
    whole = classifier.classify_file(os.path.join(data, "audio", "P01_01.wav"))
    assert set(whole) == {"verb", "noun"}
    assert whole["verb"][3][0] in EPIC_VERBS and whole["noun"][3][0] in EPIC_NOUNS
    wav = load_clip(os.path.join(data, "audio", "P01_01.wav"), 16000).unsqueeze(0)
    assert classifier.mods.embedding_model(wav).valid.shape[1] > 1  # a long file: several windows


@pytest.mark.slow
def test_epic_wrong_heads_message(tmp_path):
    from speechbrain_datar.dataio.synthetic import make_epic_kitchens_like

    data = make_epic_kitchens_like(str(tmp_path / "epic"))
    cmd = [
        sys.executable,
        os.path.join(ROOT, "recipes", "EpicKitchens100", "train.py"),
        os.path.join(ROOT, "hparams", "EpicKitchens100", "datar.yaml"),
        f"--data_folder={data}",
        f"--output_folder={tmp_path / 'exp'}",
        "--classifier_heads=null",
    ] + TINY
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert '--classifier_heads="{verb: 5, noun: 3}"' in result.stderr and "Traceback" not in result.stderr
