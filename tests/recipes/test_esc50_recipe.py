"""ESC-50: preparation in the official layout, the class-folder converter, and the recipe's 5-fold runs."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from conftest import ROOT

from speechbrain_datar.dataio.prepare import prepare_dataset
from speechbrain_datar.dataio.synthetic import ESC50_DEMO, make_esc50_like
from speechbrain_datar.errors import DataError

sys.path.insert(0, os.path.join(ROOT, "recipes", "ESC50"))
from class_folders_to_esc50 import convert  # noqa: E402
from esc50_prepare import prepare_esc50  # noqa: E402


def prepare(data, save, **options):
    prepare_dataset(
        prepare_esc50, str(save), dataset_options=dict(data_folder=str(data), **options), valid_ratio=0.25, seed=1
    )
    manifests = {split: json.loads((save / f"{split}.json").read_text()) for split in ("train", "valid", "test")}
    return json.loads((save / "prepare_report.json").read_text()), manifests


@pytest.mark.parametrize("esc10", [False, True])
def test_preparation_takes_the_folds_the_subset_and_reports_the_rest(tmp_path, esc10):
    data = make_esc50_like(str(tmp_path / "ESC-50"), per_fold=2)
    report, manifests = prepare(data, tmp_path / "save", test_fold=3, esc10=esc10)
    classes = [c for c, _, in_esc10, _ in ESC50_DEMO if in_esc10 or not esc10]
    assert {e["fold"] for e in manifests["test"].values()} == {3}
    assert {e["fold"] for s in ("train", "valid") for e in manifests[s].values()} == {1, 2, 4, 5}
    assert len(manifests["test"]) == 2 * len(classes)
    assert len(manifests["train"]) + len(manifests["valid"]) == 4 * 2 * len(classes)
    assert {e["label"] for e in manifests["test"].values()} == set(classes)
    assert report["csv"]["reasons"] == {"bad_row": 1} and "fold '9'" in report["csv"]["examples"]["bad_row"][0]
    assert report["test"]["reasons"] == {"missing": 1}  # 3-424242-A-0.wav: in the CSV, not on disk
    assert "is in the CSV but not in" in report["test"]["examples"]["missing"][0]
    assert report["test_fold"] == 3 and report["esc10"] is esc10


def test_a_folder_without_the_official_layout_is_named(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("name,class\na.wav,dog\n")
    with pytest.raises(DataError, match="does not look like esc50.csv"):
        prepare(tmp_path, tmp_path / "save")
    with pytest.raises(DataError, match="test_fold must be one of"):
        prepare(tmp_path, tmp_path / "save2", test_fold=6)


def esc50_csv(data, rows):
    """Replaces the data set's ``meta/esc50.csv`` with its header and ``rows`` (lines of text)."""
    path = os.path.join(data, "meta", "esc50.csv")
    header = open(path, encoding="utf-8").readline()
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(header + "".join(row + "\n" for row in rows))
    return path


def csv_lines(data):
    path = os.path.join(data, "meta", "esc50.csv")
    return open(path, encoding="utf-8").read().splitlines()[1:]


def test_hostile_esc50_csv_rows_are_bad_rows_and_matching_stems_are_duplicates(tmp_path):
    from esc50_prepare import read_esc50_csv

    from speechbrain_datar.dataio.report import SkipReport

    data = make_esc50_like(str(tmp_path / "ESC-50"), per_fold=1)
    lines = csv_lines(data)
    before = SkipReport("csv")
    rows_before = read_esc50_csv(os.path.join(data, "meta", "esc50.csv"), before)
    first = lines[0].split(",")
    twin = ",".join([os.path.splitext(first[0])[0] + ".ogg", first[1], "1", "rooster", *first[4:]])
    huge_field = ",".join(["x.wav", "1", "0", "dog" * 70000, "True", "x", "A"])
    many_cells = "," * 200_000
    long_fold = ",".join(["y.wav", "9" * 5000, "0", "dog", "True", "y", "A"])
    esc50_csv(data, lines + [twin, huge_field, many_cells, long_fold])
    report = SkipReport("csv")
    rows = read_esc50_csv(os.path.join(data, "meta", "esc50.csv"), report)
    assert rows == rows_before
    assert report.counts == {"duplicate": 1, "bad_row": before.counts.get("bad_row", 0) + 3}
    assert (first[0], int(first[1]), first[3]) in rows  # the first of the twins keeps its label


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_an_esc50_csv_in_another_encoding_is_read_or_refused_in_one_line(tmp_path, encoding):
    from esc50_prepare import read_esc50_csv

    from speechbrain_datar.dataio.report import SkipReport

    data = make_esc50_like(str(tmp_path / "ESC-50"), per_fold=1)
    path = os.path.join(data, "meta", "esc50.csv")
    text = open(path, encoding="utf-8").read().replace("dog", "dög")
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    if encoding == "utf-16":  # with its byte-order mark: read
        assert any(category == "dög" for _, _, category in read_esc50_csv(path, SkipReport("csv")))
    else:
        with pytest.raises(DataError) as error:
            read_esc50_csv(path, SkipReport("csv"))
        assert "is not UTF-8" in str(error.value) and "\n" not in str(error.value)


def test_a_link_to_a_device_is_not_a_file_rather_than_a_broken_link(tmp_path):
    from speechbrain_datar.dataio.audio import find_audio
    from speechbrain_datar.dataio.problems import ClipProblem

    os.symlink("/dev/zero", tmp_path / "zero.wav")
    with pytest.raises(ClipProblem) as problem:
        find_audio(str(tmp_path), "zero")
    assert problem.value.reason == "not_a_file" and "/dev/zero" in str(problem.value)


def test_class_folders_become_the_official_layout(tmp_path):
    source = tmp_path / "class_folders"
    for folder, names in (
        ("001 - Dog bark", ["1-100032-A.ogg", "2-114280-A.ogg"]),
        ("010 - Fire crackling", ["3-104958-A.ogg", "5-213802-A.ogg"]),
    ):
        (source / folder).mkdir(parents=True)
        for name in names:
            soundfile.write(
                str(source / folder / name), 0.1 * np.ones(4410, np.float32), 44100, format="OGG", subtype="VORBIS"
            )
    (source / "001 - Dog bark" / "notes.txt").write_text("not a clip")
    copied, skipped = convert(str(source), str(tmp_path / "ESC-10"))
    assert copied == 4 and skipped == [os.path.join("001 - Dog bark", "notes.txt")]
    rows = list(csv.DictReader(open(tmp_path / "ESC-10" / "meta" / "esc50.csv")))
    assert [(r["filename"], r["fold"], r["target"], r["category"], r["esc10"]) for r in rows] == [
        ("1-100032-A-0.ogg", "1", "0", "dog", "True"),
        ("2-114280-A-0.ogg", "2", "0", "dog", "True"),
        ("3-104958-A-12.ogg", "3", "12", "crackling_fire", "True"),
        ("5-213802-A-12.ogg", "5", "12", "crackling_fire", "True"),
    ]
    assert (tmp_path / "ESC-10" / "audio" / "5-213802-A-12.ogg").read_bytes() == (
        source / "010 - Fire crackling" / "5-213802-A.ogg"
    ).read_bytes()
    report, manifests = prepare(tmp_path / "ESC-10", tmp_path / "save", test_fold=5, esc10=True)
    assert list(manifests["test"]) == ["5-213802-A-12"]


@pytest.mark.slow
def test_cross_validation_runs_each_fold_and_reports_mean_and_std(tmp_path):
    data = make_esc50_like(str(tmp_path / "ESC-50"), per_fold=2, seconds=1.0)
    out = tmp_path / "exp"
    command = [
        sys.executable,
        os.path.join(ROOT, "recipes", "ESC50", "cross_validate.py"),
        os.path.join(ROOT, "hparams", "ESC50", "datar.yaml"),
        "--folds=1,2",
        f"--data_folder={data}",
        "--esc10=True",
        f"--output_folder={out}",
        "--clip_seconds=1.0",
        "--eval_hop_seconds=0.5",
        "--number_of_epochs=2",
        "--batch_size=4",
        "--num_workers=0",
        "--stats_max_clips=10",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "cross_validation.json").read_text())
    folds = [json.loads((out / f"fold{k}" / "test_metrics.json").read_text())["top1"] for k in (1, 2)]
    assert summary["top1"]["folds"] == folds
    assert summary["top1"]["mean"] == pytest.approx(np.mean(folds), abs=1e-3)
    assert summary["top1"]["std"] == pytest.approx(np.std(folds, ddof=1), abs=1e-3)
    assert "mean" in result.stdout and len(summary["runs"][0]["epochs"]) == 2
    assert {e["fold"] for e in json.loads((out / "fold2" / "save" / "test.json").read_text()).values()} == {2}


def test_a_100_mb_line_of_50_million_cells_is_a_bad_row_read_in_bounded_memory(tmp_path):
    from speechbrain_datar.testing.hostile_media import make_esc50_csv

    path = make_esc50_csv(str(tmp_path / "meta" / "esc50.csv"), "," * 50_000_000)
    command = [sys.executable, "-m", "speechbrain_datar.testing.hostile_media", f"esc50_csv={path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["outcome"] == "1 rows, skipped {'bad_row': 1}" and outcome["peak_mib"] < 1024, outcome
