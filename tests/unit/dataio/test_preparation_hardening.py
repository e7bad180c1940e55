"""Preparation on hostile or broken data: each problem gets a clear error or a skip-report entry, nothing else is lost."""

import math
import os

import numpy as np
import pytest
import soundfile
import torch
from conftest import RECIPES

from speechbrain_datar.nnet.deformable_attention import bilinear_sample


# ------------------------------------------------------------------ item 4: NaN and inf
def test_the_sampler_never_indexes_out_of_range():
    fmap = torch.randn(2, 4, 5, 3)
    positions = torch.tensor([[[math.nan, 1.0], [1.0, math.inf], [-math.inf, 2.0], [1.0, 2.0]]] * 2)
    out = bilinear_sample(fmap, positions)
    assert torch.equal(out[:, 3], fmap[:, 1, 2]) and torch.all(out[:, 0] == 0)


def test_preparation_counts_non_finite_clips(tmp_path):
    from speechbrain_datar.dataio.audio import ClipProblem, inspect_clip

    path = str(tmp_path / "nan.wav")
    data = np.full(1600, 0.1, dtype=np.float32)
    data[10] = np.nan
    soundfile.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(ClipProblem) as problem:
        inspect_clip(path)
    assert problem.value.reason == "non_finite"


# ------------------------------------------------------------------ items 2, 6, 7: preparation
def vggsound_folder(folder, rows, bom=False):
    """A VGGSound-layout folder: ``rows`` of (id, start, label, split), a 0.5 s clip for each plain id."""
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for ytid, start, _, _ in rows:
        if "/" not in ytid and not ytid.startswith("nofile"):
            tone = 0.3 * np.sin(np.arange(8000) / (3.0 + len(ytid) % 5))
            soundfile.write(str(audio / f"{ytid}_{int(start):06d}.wav"), tone, 16000)
    text = "\n".join(",".join(str(c) for c in row) for row in rows) + "\n"
    (folder / "vggsound.csv").write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return folder


def prepare_vgg(folder):
    import sys

    sys.path.insert(0, os.path.join(RECIPES, "VGGSound"))
    from vggsound_prepare import prepare_vggsound

    from speechbrain_datar.dataio.prepare import prepare_dataset

    save = folder / "save"
    prepare_dataset(
        prepare_vggsound, str(save), dataset_options={"data_folder": str(folder / "data")}, valid_ratio=0.0, seed=1
    )
    import json

    manifests = {split: json.loads((save / f"{split}.json").read_text()) for split in ("train", "test")}
    return json.loads((save / "prepare_report.json").read_text()), manifests


ROWS = [(f"clip{i}", i, "dog" if i % 2 else "cat", "train") for i in range(6)] + [("clipT", 1, "dog", "test")]


def test_ids_that_lead_outside_the_data_folder_are_refused(tmp_path):
    secret = tmp_path / "outside" / "secret_000001.wav"
    secret.parent.mkdir()
    soundfile.write(str(secret), 0.3 * np.sin(np.arange(8000) / 3.0), 16000)
    rows = ROWS + [
        ("../../outside/secret", 1, "dog", "train"),
        (str(tmp_path / "outside" / "secret"), 1, "cat", "train"),
    ]
    report, manifests = prepare_vgg(vggsound_folder(tmp_path / "data", rows).parent)
    assert report["train"]["reasons"] == {"outside_data_folder": 2}
    assert len(manifests["train"]) == 6 and all("secret" not in entry["path"] for entry in manifests["train"].values())


def test_annotation_edge_cases(tmp_path):
    rows = ROWS + [("negative", -3, "dog", "train"), ("arrow", 2, "dog => cat", "train")]
    folder = vggsound_folder(tmp_path / "data", rows, bom=True)
    soundfile.write(
        str(folder / "audio" / "mp3clip_000004.mp3"), 0.3 * np.sin(np.arange(8000) / 4.0), 16000, format="MP3"
    )
    (folder / "audio" / "wmaclip_000005.wma").write_bytes(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")
    with open(folder / "vggsound.csv", "a") as f:
        f.write("mp3clip,4,cat,train\nwmaclip,5,cat,train\n")
    report, manifests = prepare_vgg(tmp_path)
    assert "clip0_000000" in manifests["train"]  # the first row, behind the byte-order mark
    assert manifests["train"]["mp3clip_000004"]["path"].endswith(".mp3")
    assert report["csv"]["reasons"] == {"bad_row": 1} and "non-negative" in report["csv"]["examples"]["bad_row"][0]
    assert report["train"]["reasons"] == {"unusable_label": 1, "unsupported_format": 1}
    from speechbrain_datar.dataio.labels import load_label_encoder

    assert sorted(load_label_encoder(str(tmp_path / "save" / "label_encoder.txt")).lab2ind) == ["cat", "dog"]


def test_changed_annotations_or_clips_are_prepared_again(tmp_path):
    folder = vggsound_folder(tmp_path / "data", ROWS)
    _, manifests = prepare_vgg(tmp_path)
    assert len(manifests["train"]) == 6
    kept = (tmp_path / "save" / "train.json").stat().st_mtime_ns
    _, manifests = prepare_vgg(tmp_path)  # nothing changed: nothing is redone
    assert (tmp_path / "save" / "train.json").stat().st_mtime_ns == kept
    (folder / "vggsound.csv").write_text("\n".join(",".join(map(str, r)) for r in ROWS[3:]) + "\n")
    os.remove(folder / "audio" / "clip4_000004.wav")
    report, manifests = prepare_vgg(tmp_path)
    assert sorted(manifests["train"]) == ["clip3_000003", "clip5_000005"]
    assert report["train"]["reasons"] == {"missing": 1}


def test_a_clip_that_disappears_after_preparation_is_skipped_with_a_warning(tmp_path, caplog):
    import logging

    from speechbrain_datar.dataio.labels import load_label_encoder
    from speechbrain_datar.dataio.pipelines import build_datasets

    vggsound_folder(tmp_path / "data", ROWS)
    prepare_vgg(tmp_path)
    os.remove(tmp_path / "data" / "audio" / "clip2_000002.wav")
    save = tmp_path / "save"
    encoders = {"label": load_label_encoder(str(save / "label_encoder.txt"))}
    with caplog.at_level(logging.WARNING):
        datasets = build_datasets({"train": str(save / "train.json")}, encoders, 16000, 1.0)
    assert len(datasets["train"]) == 5 and "1 clips" in caplog.text
    assert all(item["sig"].shape[0] == 8000 for item in datasets["train"])


def test_a_full_disk_during_preparation_is_named_and_nothing_is_marked_prepared(tmp_path, monkeypatch):
    import errno

    import speechbrain_datar.dataio.manifest as manifest
    from speechbrain_datar.errors import DiskFullError

    vggsound_folder(tmp_path / "data", ROWS)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest.json, "dump", full)
    with pytest.raises(DiskFullError, match="no space left on .*save"):
        prepare_vgg(tmp_path)
    monkeypatch.undo()
    assert not (tmp_path / "save" / "prepare_options.json").exists()
    _, manifests = prepare_vgg(tmp_path)  # with space again, it prepares
    assert len(manifests["train"]) == 6


# ------------------------------------------------------------------ real downloads: cells, splits, braces, links
def _recipe_module(folder, name):
    import importlib
    import sys

    sys.path.insert(0, os.path.join(RECIPES, folder))
    return importlib.import_module(name)


def test_malformed_cells_are_counted_as_bad_rows(tmp_path):
    from speechbrain_datar.dataio.report import SkipReport

    vgg = tmp_path / "vgg.csv"
    vgg.write_text("clip0,1,dog,train\nclip1,\u00b2,dog,train\nclip2,\u0663,dog,train\n", encoding="utf-8")
    report = SkipReport("csv")
    assert [row[0] for row in _recipe_module("VGGSound", "vggsound_prepare").read_vggsound_csv(str(vgg), report)] == [
        "clip0"
    ]
    assert report.counts == {"bad_row": 2}

    segments = tmp_path / "segments.csv"
    segments.write_text(
        '# YTID, start_seconds, end_seconds, positive_labels\nA, 0.0, 10.0, "/m/a"\n'
        'B, inf, 10.0, "/m/a"\nC, 0.0, 1e400, "/m/a"\nD, nan, 5.0, "/m/a"\n'
    )
    report = SkipReport("csv")
    rows = _recipe_module("AudioSet", "audioset_prepare").read_segments(str(segments), {"/m/a": "Dog"}, report)
    assert [row[0] for row in rows] == ["A"] and report.counts == {"bad_row": 3}

    kinetics = tmp_path / "train.csv"
    kinetics.write_text(
        "label,youtube_id,time_start,time_end,split\nbarking,a,1,11,train\nbarking,b,1e400,11,train\n"
        "barking,c,inf,11,train\n"
    )
    report = SkipReport("csv")
    rows, _ = _recipe_module("KineticsSounds", "kinetics_sounds_prepare").read_kinetics_csv(
        str(kinetics), {"barking"}, report
    )
    assert [row[1] for row in rows] == ["a"] and report.counts == {"bad_row": 2}

    epic = tmp_path / "EPIC_100_train.csv"
    header = (
        "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,start_frame,"
        "stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes"
    )
    epic.write_text(
        header + "\n"
        "P01_01_0,P01,P01_01,00:00:01.00,00:00:01.00,00:00:02.00,50,100,open tap,open,3,tap,4,[],[]\n"
        "P01_01_1,P01,P01_01,00:00:01.00,00:00:01.00\n"
        "P01_01_2,P01,P01_01,00:00:01.00,00:00:03.00,00:00:04.00,x,\u00b2,close tap,close,4,tap,4,[],[]\n"
        "P01_01_3,P01,P01_01,00:00:01.00,00:00:03.00,00:00:04.00,1,2,close tap,close,\u00b2,tap,4,[],[]\n"
    )
    report = SkipReport("train")
    rows = _recipe_module("EpicKitchens100", "epic_kitchens_prepare").read_segments(str(epic), report)
    assert [(row[0], row[6]) for row in rows] == [("P01_01_0", (50, 100)), ("P01_01_2", None)]
    assert report.counts == {"bad_row": 2, "bad_frame_numbers": 1}


def test_an_empty_validation_or_test_split_ends_the_run_in_one_line(tmp_path):
    from speechbrain_datar.dataio.labels import load_label_encoder
    from speechbrain_datar.dataio.pipelines import build_datasets
    from speechbrain_datar.errors import DataError

    vggsound_folder(tmp_path / "data", ROWS)
    prepare_vgg(tmp_path)  # valid_ratio 0: valid.json is empty
    save = tmp_path / "save"
    encoders = {"label": load_label_encoder(str(save / "label_encoder.txt"))}
    with pytest.raises(
        DataError,
        match=r"^the valid split has no clip to evaluate \(.*valid.json\): see "
        r"prepare_report.json",
    ):
        build_datasets({split: str(save / f"{split}.json") for split in ("train", "valid")}, encoders, 16000, 1.0)


def test_braces_in_labels_ids_and_folders_and_broken_links_beside_the_clips(tmp_path):
    from speechbrain_datar.dataio.labels import load_label_encoder
    from speechbrain_datar.dataio.pipelines import build_datasets

    rows = [
        ("x{0}", 1, "{a: b}", "train"),
        ("y{name}", 2, "dog", "train"),
        ("z", 3, "{a: b}", "train"),
        ("w", 4, "dog", "train"),
        ("t{}", 5, "dog", "test"),
        ("gone", 6, "dog", "train"),
    ]
    data = tmp_path / "data {v2}"
    vggsound_folder(data, rows)
    os.remove(data / "audio" / "gone_000006.wav")
    os.symlink(str(tmp_path / "nowhere.wav"), str(data / "audio" / "gone_000006.wav"))  # named, dangling
    os.symlink(str(tmp_path / "nowhere.wav"), str(data / "audio" / "unrelated.wav"))  # named by nothing
    os.symlink(str(data / "audio" / "loop.wav"), str(data / "audio" / "loop.wav"))  # a loop
    vgg = _recipe_module("VGGSound", "vggsound_prepare")
    from speechbrain_datar.dataio.prepare import prepare_dataset

    save = tmp_path / "save"
    for _ in range(2):  # the second run checks the fingerprint against the first
        prepare_dataset(
            vgg.prepare_vggsound, str(save), dataset_options={"data_folder": str(data)}, valid_ratio=0.0, seed=1
        )
    import json

    report = json.loads((save / "prepare_report.json").read_text())
    assert report["train"]["reasons"] == {"broken_link": 1}
    encoders = {"label": load_label_encoder(str(save / "label_encoder.txt"))}
    datasets = build_datasets(
        {split: str(save / f"{split}.json") for split in ("train", "test")}, encoders, 16000, 0.25
    )
    items = {item["id"]: item for item in datasets["train"]}
    assert sorted(items) == ["w_000004", "x{0}_000001", "y{name}_000002", "z_000003"]
    assert items["x{0}_000001"]["label_encoded"] == encoders["label"].lab2ind["{a: b}"]
    assert next(iter(datasets["test"]))["sig"].shape == (8000,)
