"""Distillation end to end through the real recipes: EPIC-KITCHENS' two heads and FSD50K's multi-label head learn
from a scores file (``--teacher_scores``), after a teacher with other classes was refused in one line."""

import csv
import glob
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY_RECIPE_OPTIONS

from speechbrain_datar.dataio.labels import label_encoder_file, load_label_encoder

TINY = [*TINY_RECIPE_OPTIONS, "--mixup_alpha=0"]


def run(recipe, data_folder, output_folder, *extra):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "recipes", recipe, "train.py"),
        os.path.join(ROOT, "hparams", recipe, "datar.yaml"),
        f"--data_folder={data_folder}",
        f"--output_folder={output_folder}",
        *TINY,
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def refused_then_distilled(recipe, data, out, scores_for, *options):
    """A scores file with a class the data lacks is refused in one line before training (preparation done);
    then ``scores_for(manifest entries, classes by head)`` gives the scores the run distils from."""
    save = os.path.join(out, "save")
    wrong = os.path.join(out, "..", "wrong_scores.json")
    os.makedirs(out, exist_ok=True)
    with open(wrong, "w") as f:
        json.dump({"classes": {"nothing": ["x"]}, "probabilities": {}}, f)
    refused = run(recipe, data, out, f"--teacher_scores={wrong}", *options)
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: teacher") and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert not glob.glob(os.path.join(save, "CKPT+*"))
    entries = json.load(open(os.path.join(save, "train.json")))
    keys = json.load(open(os.path.join(save, "label_keys.json")))
    classes = {}
    for key in keys:
        encoder = load_label_encoder(os.path.join(save, label_encoder_file(key)))
        classes[key] = [str(encoder.ind2lab[i]) for i in range(len(encoder))]
    scores = os.path.join(out, "..", "scores.json")
    with open(scores, "w") as f:
        json.dump({"classes": classes, "probabilities": scores_for(entries, classes)}, f)
    result = run(recipe, data, out, f"--teacher_scores={scores}", *options)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "teacher scores: wrote" in open(os.path.join(out, "log.txt")).read()
    return classes


@pytest.mark.slow
def test_two_heads_learn_what_the_teacher_says_for_each_head(tmp_path):
    from speechbrain_datar.dataio.synthetic import make_epic_kitchens_like

    data = make_epic_kitchens_like(str(tmp_path / "epic"))
    out = str(tmp_path / "exp")
    chosen = {}

    def teacher_says_one_class_per_head(entries, classes):
        # every clip: most of the probability on one class per head (the last), whatever its labels
        chosen.update({head: names[-1] for head, names in classes.items()})
        rows = {}
        for head, names in classes.items():
            rest = 0.05 / (len(names) - 1)
            rows[head] = [0.95 if name == chosen[head] else rest for name in names]
        return {clip_id: rows for clip_id in entries}

    refused_then_distilled(
        "EpicKitchens100",
        data,
        out,
        teacher_says_one_class_per_head,
        "--distill_weight=1.0",
        "--lr=0.003",
        "--number_of_epochs=3",
    )
    for head in ("verb", "noun"):
        rows = list(csv.DictReader(open(os.path.join(out, f"test_predictions_{head}.csv"))))
        share = sum(row["prediction"] == chosen[head] for row in rows) / len(rows)
        assert share >= 0.75, (head, share)  # taught by the teacher alone, not by the labels


@pytest.mark.slow
def test_a_multi_label_head_learns_the_teachers_tags(tmp_path):
    from speechbrain_datar.dataio.synthetic import make_fsd50k_like

    data = tmp_path / "fsd"
    make_fsd50k_like(str(data), dev_clips=60, val_clips=12, eval_clips=12, seconds=1.0)
    out = str(tmp_path / "exp")
    chosen = []

    def teacher_tags_two_classes(entries, classes):
        names = classes["labels"]
        chosen.extend(names[:2])
        return {clip_id: {"labels": [0.97 if name in chosen else 0.01 for name in names]} for clip_id in entries}

    refused_then_distilled(
        "FSD50K",
        str(data),
        out,
        teacher_tags_two_classes,
        "--distill_weight=1.0",
        "--lr=0.003",
        "--number_of_epochs=3",
        "--drop_path_rate=0.0",
    )
    from speechbrain_datar.inference.interfaces import AudioTagger

    tagger = AudioTagger.from_hparams(source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "m"))
    test = json.load(open(os.path.join(out, "save", "test.json")))
    tagged = [set(tagger.classify_file(entry["path"])[3][0]) for entry in test.values()]
    assert sum(tags == set(chosen) for tags in tagged) >= 0.75 * len(tagged), tagged
