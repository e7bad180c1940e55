"""The multi-label recipes: the official FSD50K and AudioSet annotation layouts, and FSD50K trained end to end."""

import csv
import json
import os
import sys

import numpy as np
import pytest
from conftest import RECIPES

from speechbrain_datar.dataio.prepare import write_prepared
from speechbrain_datar.dataio.report import SkipReport
from speechbrain_datar.dataio.synthetic import make_fsd50k_like

sys.path.extend([os.path.join(RECIPES, "FSD50K"), os.path.join(RECIPES, "AudioSet")])
from audioset_prepare import prepare_audioset, read_class_labels, read_segments  # noqa: E402
from fsd50k_prepare import prepare_fsd50k, read_ground_truth, read_vocabulary  # noqa: E402


def write_csv(path, rows, header=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def test_audioset_segment_lists_parse_exactly(tmp_path):
    """Comment lines, a space after each comma, quoted MIDs with commas, display names with commas."""
    classes = tmp_path / "class_labels_indices.csv"
    classes.write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n2,/m/0bt9lr,"Dog"\n'
    )
    segments = tmp_path / "eval_segments.csv"
    segments.write_text(
        "# Segments csv created Sun Mar  5 10:54:25 2017\n"
        "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=5\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--4gqARaEJE, 0.000, 10.000, "/m/09x0r,/m/05zppz,/m/0bt9lr"\n'
        '--BfvyPmVMo, 20.000, 30.000, "/m/0bt9lr,/m/unknown"\n'
        '--U7joUcTCo, 0.000, 10.000, "/m/unknown"\n'
        "--broken, 1.0, 10.000\n"
    )
    names = read_class_labels(str(classes))
    assert names["/m/05zppz"] == "Male speech, man speaking"
    report = SkipReport("csv")
    rows = read_segments(str(segments), names, report)
    assert rows == [
        ("--4gqARaEJE", 0.0, 10.0, ["Dog", "Male speech, man speaking", "Speech"]),
        ("--BfvyPmVMo", 20.0, 30.0, ["Dog"]),
    ]
    assert report.counts == {"unknown_mid": 2, "no_known_label": 1, "bad_row": 1}


def test_fsd50k_ground_truth_parses_exactly(tmp_path):
    truth = tmp_path / "FSD50K.ground_truth"
    write_csv(
        str(truth / "vocabulary.csv"),
        [[0, "Electric_guitar", "/m/02sgy"], [1, "Guitar", "/m/0342h"], [2, "Music", "/m/04rlf"]],
    )
    write_csv(
        str(truth / "dev.csv"),
        [
            [64760, "Electric_guitar,Guitar,Music", "/m/02sgy,/m/0342h,/m/04rlf", "train"],
            [16399, "Guitar,Unheard", "/m/0342h,/m/zzz", "val"],
            [11, "Unheard", "/m/zzz", "train"],
            [12, "Music", "/m/04rlf", "test"],
        ],
        header=["fname", "labels", "mids", "split"],
    )
    vocabulary = read_vocabulary(str(truth / "vocabulary.csv"))
    report = SkipReport("csv")
    rows = read_ground_truth(str(truth / "dev.csv"), vocabulary, report, splits=("train", "val"))
    assert rows == [("64760", ["Electric_guitar", "Guitar", "Music"], "train"), ("16399", ["Guitar"], "val")]
    assert report.counts == {"unknown_mid": 2, "no_known_label": 1, "bad_row": 1}


def test_fsd50k_preparation_of_a_generated_set_reports_every_dropped_label(tmp_path):
    """The generated set in FSD50K's layout, with a missing clip, an unknown MID and an evaluation label
    that has no training clip: each is counted, and no clip loses a label without a line in the report."""
    folder = tmp_path / "fsd"
    events = make_fsd50k_like(str(folder), dev_clips=30, val_clips=6, eval_clips=10, seconds=1.0)
    truth = folder / "FSD50K.ground_truth"
    with open(truth / "eval.csv") as f:
        rows = list(csv.reader(f))
    rows[1][1] += ",Mystery"
    rows[1][2] += ",/m/mystery"  # in the vocabulary, but no training clip has it
    rows[2][2] += ",/m/notinvocabulary"
    write_csv(str(truth / "eval.csv"), rows[1:], header=rows[0])
    with open(truth / "vocabulary.csv", "a", newline="") as f:
        csv.writer(f).writerow([99, "Mystery", "/m/mystery"])
    dev_fname = next(iter(events))
    os.remove(folder / "FSD50K.dev_audio" / f"{dev_fname}.wav")
    data = prepare_fsd50k(str(folder), num_workers=1)
    save = tmp_path / "prepared"
    save.mkdir()
    write_prepared(str(save), data=data, valid_ratio=0.1, seed=1)
    report = json.loads((save / "prepare_report.json").read_text())
    assert report["csv"]["reasons"]["unknown_mid"] == 1
    assert report["train"]["reasons"]["missing"] == 1
    assert report["test"]["reasons"]["label_without_training_data"] == 1
    test = json.loads((save / "test.json").read_text())
    valid = json.loads((save / "valid.json").read_text())
    assert len(test) == 10 and len(valid) == 6  # the official val split, not carved from train
    for fname, entry in test.items():
        assert entry["labels"] == sorted({e["label"] for e in events[fname]})  # Mystery dropped, reported


@pytest.mark.slow
def test_fsd50k_recipe_tags_the_generated_set_and_finds_when(tmp_path):
    """The real recipe trains a micro DATAR on the generated multi-label set (1-3 events per 3 s clip, levels
    up to 17 dB apart). Its test mAP must be well above the label-frequency baseline, and the segments the exported
    tagger finds must start near most events' true onsets."""
    import subprocess

    from speechbrain_datar.inference.interfaces import AudioTagger

    root = os.path.dirname(RECIPES)
    data = tmp_path / "fsd"
    events = make_fsd50k_like(str(data), dev_clips=240, val_clips=24, eval_clips=48, seconds=3.0)
    out = tmp_path / "exp"
    cmd = [
        sys.executable,
        os.path.join(RECIPES, "FSD50K", "train.py"),
        os.path.join(root, "hparams", "FSD50K", "datar.yaml"),
        f"--data_folder={data}",
        f"--output_folder={out}",
        "--preset=micro",
        "--clip_seconds=3.0",
        "--eval_hop_seconds=1.0",
        "--batch_size=8",
        "--num_workers=0",
        "--lr=0.0005",
        "--mixup_alpha=0",
        "--drop_path_rate=0.0",
        "--number_of_epochs=20",
        "--stats_max_clips=40",
    ]
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    test = json.loads((out / "save" / "test.json").read_text())
    classes = sorted({label for entry in test.values() for label in entry["labels"]})
    baseline = np.mean([np.mean([c in entry["labels"] for entry in test.values()]) for c in classes])
    print(
        f"test mAP {metrics['mAP']:.1f}% (label-frequency baseline {100 * baseline:.1f}%), "
        f"AUC {metrics['AUC']:.1f}%, d' {metrics['d_prime']:.2f}"
    )
    assert metrics["mAP"] >= 100 * baseline + 30
    per_class = list(csv.DictReader(open(out / "test_per_class.csv")))
    assert sorted(row["class"] for row in per_class) == classes

    tagger = AudioTagger.from_hparams(source=str(out / "pretrained"), savedir=str(tmp_path / "loaded"))
    hits, total = 0, 0
    for fname, entry in test.items():
        probs, scores, indices, labels = tagger.classify_file(entry["path"])
        assert probs.shape == (1, len(classes)) and labels[0] == [classes[i] for i in indices[0]]
        assert all(probs[0, i] >= 0.5 for i in indices[0]) and sorted(scores[0], reverse=True) == scores[0]
        assert len(tagger.classify_file(entry["path"], threshold=0.0)[3][0]) == len(classes)
        _, resolution, found = tagger.timeline(entry["path"], threshold=0.5)["labels"]
        for event in events[fname]:
            total += 1
            hits += any(
                label == event["label"] and abs(start - event["onset"]) <= ONSET_TOLERANCE
                for start, end, label, score in found
            )
    print(f"onsets within {ONSET_TOLERANCE} s: {hits}/{total} = {hits / total:.2f} (rows every {resolution:.3f} s)")
    assert hits / total >= 0.75

    from speechbrain_datar.visualize import main as visualize

    picture = tmp_path / "timeline.png"
    visualize(["--model", str(out / "pretrained"), "--audio", entry["path"], "--output", str(picture), "--timeline"])
    assert picture.stat().st_size > 10000


#: Seconds a segment's start may lie from the event's onset (1 s windows every 0.125 s).
ONSET_TOLERANCE = 0.5


def test_audioset_preparation_counts_missing_clips_and_keeps_every_label(tmp_path):
    import soundfile

    (tmp_path / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n2,/m/0bt9lr,"Dog"\n'
    )
    header = "# YTID, start_seconds, end_seconds, positive_labels\n"
    (tmp_path / "balanced_train_segments.csv").write_text(
        header
        + "".join(
            f'train{i}, {10 * i}.000, {10 * i + 10}.000, "{mids}"\n'
            for i, mids in enumerate(["/m/09x0r,/m/05zppz", "/m/0bt9lr", "/m/0bt9lr,/m/09x0r", "/m/05zppz"])
        )
    )
    (tmp_path / "eval_segments.csv").write_text(
        header + 'eval0, 0.000, 10.000, "/m/0bt9lr,/m/x"\neval1, 0.000, 10.000, "/m/09x0r"\n'
    )
    (tmp_path / "audio").mkdir()
    rng = np.random.default_rng(0)
    for ytid in ["train0", "train1", "train2", "eval0", "eval1"]:  # train3 is missing
        soundfile.write(str(tmp_path / "audio" / f"Y{ytid}.wav"), 0.1 * rng.standard_normal(4000), 16000)
    data = prepare_audioset(str(tmp_path), num_workers=1)
    assert data.reports[0].counts == {"unknown_mid": 1}
    assert data.reports[1].counts == {"missing": 1}
    assert {k: v["labels"] for k, v in data.train.items()} == {
        "train0_0": ["Male speech, man speaking", "Speech"],
        "train1_10": ["Dog"],
        "train2_20": ["Dog", "Speech"],
    }
    assert {k: v["labels"] for k, v in data.test.items()} == {"eval0_0": ["Dog"], "eval1_0": ["Speech"]}
