"""Tar shards: what is written equals what the files give, a killed write resumes to the same bytes, every
clip is streamed exactly once per epoch over processes and workers, and damage is reported, not trained on."""

import json
import logging
import os
import random

import numpy as np
import pytest
import soundfile
import speechbrain as sb
import torch

from speechbrain_datar.dataio import shards as shards_module
from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.frames import FrameTransform
from speechbrain_datar.dataio.pipelines import build_datasets
from speechbrain_datar.dataio.shards import (
    ShardStream,
    check_shards,
    open_shard_folder,
    plan_epoch,
    shard_eval_dataset,
    shard_settings,
    write_shards,
)
from speechbrain_datar.dataio.shards import writing as shard_writing
from speechbrain_datar.dataio.synthetic import render_scene, write_video
from speechbrain_datar.errors import DataError

LABELS = ["bark", "chirp", "hum"]


def encoder_of(labels):
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.update_from_iterable(labels)
    return encoder


def make_prepared(folder, n_train=23, n_test=5, rate=22050, seconds=1.3, video=False):
    """Clips (wav at another rate than the recipe's, or mp4 with frames) and their manifests."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    manifests = {}
    for split, n in (("train", n_train), ("valid", 3), ("test", n_test)):
        entries = {}
        for i in range(n):
            key = f"{split}{i}"
            duration = seconds + 0.1 * (i % 3)
            wav = (0.1 * rng.standard_normal(int(rate * duration))).astype(np.float32)
            if video:
                path = os.path.join(folder, key + ".mp4")
                write_video(path, wav, rate, render_scene(i % 3, duration, rng, fps=10, size=48), fps=10)
            else:
                path = os.path.join(folder, key + ".wav")
                soundfile.write(path, wav, rate)
            entries[key] = {"path": path, "start": None, "stop": None, "duration": duration, "label": LABELS[i % 3]}
            if video:
                entries[key].update(fps=10.0, frames_folder=None, frame_offset=0.0)
        manifests[split] = os.path.join(folder, f"{split}.json")
        with open(manifests[split], "w") as f:
            json.dump(entries, f)
    return manifests


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("prepared"))
    manifests = make_prepared(folder)
    shards = os.path.join(folder, "shards")
    report = write_shards(manifests, shards, shard_settings(16000), shard_megabytes=0.1, progress=False)
    return manifests, shards, report


def all_ids(manifest):
    with open(manifest) as f:
        return set(json.load(f))


def test_stored_audio_is_what_the_files_give_and_evaluation_items_are_the_same(prepared):
    manifests, folder, report = prepared
    assert report["train"]["clips"] == 23 and report["train"]["shards"] > 3 and not report["train"]["skipped"]
    encoders = {"label": encoder_of(LABELS)}
    shards = open_shard_folder(folder, manifests, shard_settings(16000))
    from_files = build_datasets({"test": manifests["test"]}, encoders, 16000, 1.0)["test"]
    from_shards = shard_eval_dataset(shards["test"], manifests["test"], encoders, shard_settings(16000))
    assert len(from_files) == len(from_shards) == 5
    for a, b in zip(from_files, from_shards):
        assert a["id"] == b["id"] and torch.equal(a["label_encoded"], b["label_encoded"])
        assert torch.equal(a["sig"], b["sig"])  # bit for bit: evaluation from shards equals evaluation from files
    with open(manifests["train"]) as f:
        entry = json.load(f)["train4"]
    stream = ShardStream(shards["train"], encoders, shard_settings(16000), None, 4)
    stored = {b_id: sig for batch in stream for b_id, sig in zip(batch.id, batch.sig.data)}
    full = load_clip(entry["path"], 16000)
    assert torch.equal(stored["train4"][: full.shape[0]], full)


@pytest.mark.parametrize("world_size,workers,batch", [(1, 1, 4), (2, 1, 4), (2, 2, 3), (3, 2, 2)])
def test_every_clip_once_per_epoch_over_processes_and_workers_with_equal_steps(prepared, world_size, workers, batch):
    manifests, folder, _ = prepared
    encoders = {"label": encoder_of(LABELS)}
    shards = open_shard_folder(folder, manifests, shard_settings(16000))["train"]
    first_rank_order = {}
    for epoch in (1, 2):
        seen, steps, orders = [], [], []
        for rank in range(world_size):
            stream = ShardStream(shards, encoders, shard_settings(16000), 1.0, batch, workers, 5, 7, rank, world_size)
            stream.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers if workers > 1 else 0)
            batches = list(loader)
            assert len(batches) == len(stream)
            assert all(0 < len(b.id) <= batch for b in batches)
            assert all(b.sig.data.shape[1] == 16000 for b in batches)  # the training crop
            seen += [i for b in batches for i in b.id]
            orders.append([i for b in batches for i in b.id])
            steps.append(len(batches))
        assert sorted(seen) == sorted(all_ids(manifests["train"]))  # each clip once, none twice
        assert len(set(steps)) == 1  # the same number of steps in every process
        first_rank_order[epoch] = orders[0]
    assert first_rank_order[1] != first_rank_order[2]  # shards and buffer are shuffled anew each epoch


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_resumed_epoch_gives_the_batches_the_uninterrupted_epoch_had_left(prepared, workers):
    manifests, folder, _ = prepared
    encoders = {"label": encoder_of(LABELS)}
    shards = open_shard_folder(folder, manifests, shard_settings(16000))["train"]
    stream = ShardStream(shards, encoders, shard_settings(16000), 1.0, 3, workers, 4, 7)

    def epoch_ids(steps_done):
        stream.steps_done = lambda: steps_done
        stream.set_epoch(3)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers if workers > 1 else 0)
        assert len(loader) == len(stream)
        return [tuple(batch.id) for batch in loader]

    whole = epoch_ids(0)
    for steps_done in (1, 3, 5, len(whole) - 1):
        # the same batches (the loader may take them from its workers in another turn)
        assert sorted(epoch_ids(steps_done)) == sorted(whole[steps_done:])


def test_balanced_sampling_from_shards_balances_the_classes_with_equal_steps(prepared):
    from speechbrain_datar.training.recipe import balanced_draws

    manifests, folder, _ = prepared
    with open(manifests["train"]) as f:
        entries = json.load(f)
    keep = [key for key in entries if entries[key]["label"] != "hum"][:14] + ["train2"]  # one clip of "hum"
    imbalanced = os.path.join(os.path.dirname(folder), "imbalanced.json")
    with open(imbalanced, "w") as f:
        json.dump({key: entries[key] for key in keep}, f)
    shards = open_shard_folder(folder, manifests, shard_settings(16000))["train"]
    draws = balanced_draws(imbalanced, "label")
    assert sorted(set(round(v, 3) for v in draws.values())) == [0.714, 5.0]  # 15 draws in all, 5 of them the "hum" clip
    per_class, seen_in = {}, {}
    for epoch in range(1, 9):
        steps = []
        for rank in range(2):
            stream = ShardStream(
                shards,
                {"label": encoder_of(LABELS)},
                shard_settings(16000),
                1.0,
                4,
                1,
                5,
                7,
                rank,
                2,
                expected_draws=draws,
            )
            stream.set_epoch(epoch)
            batches = list(stream)
            steps.append(len(batches))
            for batch in batches:
                for clip_id in batch.id:
                    label = entries[clip_id]["label"]
                    per_class[label] = per_class.get(label, 0) + 1
                    seen_in.setdefault(clip_id, set()).add(epoch)
        assert steps[0] == steps[1]
    assert set(seen_in) <= set(keep)
    counts = [per_class[label] for label in LABELS]
    assert max(counts) < 1.6 * min(counts), per_class  # balanced: 14 clips of two classes against 1 of the third


def test_plan_deals_every_shard_once_and_balances_steps():
    rng = random.Random(0)
    for _ in range(300):
        counts = [rng.randint(1, 40) for _ in range(rng.randint(1, 30))]
        world, workers, batch = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 16)
        try:
            plan = plan_epoch(counts, world, workers, batch, rng.randint(0, 9), 1)
        except DataError as error:
            assert "smaller shards" in str(error)
            continue
        dealt = sorted(i for rank in plan for w in rank for i in w["shards"])
        assert dealt == list(range(len(counts)))
        assert len({sum(len(w["batches"]) for w in rank) for rank in plan}) == 1
        for rank in plan:
            for w in rank:
                assert sum(w["batches"]) == sum(counts[i] for i in w["shards"])
                assert all(0 < size <= batch for size in w["batches"])


def test_too_few_shards_for_the_processes_is_a_clear_error():
    with pytest.raises(DataError, match="smaller shards"):
        plan_epoch([100, 1], world_size=2, num_workers=1, batch_size=4, epoch=0, seed=0)


def test_a_killed_write_resumes_to_the_same_shards(tmp_path, monkeypatch):
    manifests = make_prepared(str(tmp_path / "data"), n_train=12, n_test=2)
    whole = str(tmp_path / "whole")  # written by two decoding processes: the same bytes as by one
    write_shards(manifests, whole, shard_settings(16000), shard_megabytes=0.2, progress=False, workers=2)
    killed = str(tmp_path / "killed")
    real, calls = shard_writing.encode_clip, []

    def dies_at_the_ninth_clip(*args):
        calls.append(args[0])
        if len(calls) == 9:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(shard_writing, "encode_clip", dies_at_the_ninth_clip)
    with pytest.raises(KeyboardInterrupt):
        write_shards(manifests, killed, shard_settings(16000), shard_megabytes=0.2, progress=False)
    monkeypatch.setattr(shard_writing, "encode_clip", real)
    assert any(name.endswith(".part") for name in os.listdir(killed))
    finished_before = {n for n in os.listdir(killed) if n.endswith(".tar")}
    write_shards(manifests, killed, shard_settings(16000), shard_megabytes=0.2, progress=False)
    assert finished_before  # the finished shards were kept, not written again
    names = sorted(n for n in os.listdir(whole) if n.endswith(".tar"))
    assert names == sorted(n for n in os.listdir(killed) if n.endswith(".tar"))
    for name in names:
        with open(os.path.join(whole, name), "rb") as a, open(os.path.join(killed, name), "rb") as b:
            assert a.read() == b.read(), name
    assert check_shards(killed) == {}


def test_shards_of_another_preparation_or_rate_are_refused(prepared, tmp_path):
    manifests, folder, _ = prepared
    with pytest.raises(DataError, match="other settings.*sample_rate"):
        open_shard_folder(folder, manifests, shard_settings(8000))
    other = make_prepared(str(tmp_path / "other"), n_train=6, n_test=2)
    with pytest.raises(DataError, match="another preparation"):
        open_shard_folder(folder, other, shard_settings(16000))
    with pytest.raises(DataError, match="another preparation"):
        write_shards(other, folder, shard_settings(16000), progress=False)
    with pytest.raises(DataError, match="holds no shards"):
        open_shard_folder(str(tmp_path), other, shard_settings(16000))


def test_a_clip_gone_since_preparation_is_left_out_and_reported(tmp_path):
    manifests = make_prepared(str(tmp_path / "data"), n_train=6, n_test=2)
    os.remove(str(tmp_path / "data" / "train3.wav"))
    report = write_shards(manifests, str(tmp_path / "s"), shard_settings(16000), progress=False)
    assert report["train"]["clips"] == 5 and list(report["train"]["skipped"]) == ["train3"]
    with open(tmp_path / "s" / "shards_report.json") as f:
        assert json.load(f)["train"]["skipped"] == {"train3": "missing"}


def copy_shards(folder, destination):
    import shutil

    shutil.copytree(folder, destination)
    return str(destination)


def test_truncated_and_damaged_shards_are_reported_by_name_and_skipped(prepared, tmp_path, caplog):
    manifests, folder, _ = prepared
    folder = copy_shards(folder, tmp_path / "shards")
    shards = open_shard_folder(folder, manifests, shard_settings(16000))["train"]
    truncated, damaged = shards[0], shards[1]
    with open(truncated["path"], "r+b") as f:
        f.truncate(truncated["bytes"] // 2)
    with open(damaged["path"], "r+b") as f:  # flip bytes inside the second clip's audio
        data = bytearray(f.read())
        at = data.rfind(b"audio.npy") + 2000
        data[at : at + 8] = bytes(255 - b for b in data[at : at + 8])
        f.seek(0)
        f.write(data)
    problems = check_shards(folder)
    assert set(problems) == {truncated["name"], damaged["name"]}
    encoders = {"label": encoder_of(LABELS)}
    with caplog.at_level(logging.WARNING):
        stream = ShardStream(shards, encoders, shard_settings(16000), 1.0, 4)
        ids = [i for batch in stream for i in batch.id]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert truncated["path"] in messages and "truncated" in messages
    assert damaged["path"] in messages and "differs from what was written" in messages
    expected = all_ids(manifests["train"]) - set(truncated["ids"])
    assert set(ids) == expected - {i for i in damaged["ids"] if i not in ids}
    assert len(expected) - len(set(ids)) == 1  # only the damaged clip is lost from the damaged shard
    assert len(ids) - len(set(ids)) < 4  # at most a batch of clips repeated to keep the planned steps
    assert len(list(ShardStream(shards, encoders, shard_settings(16000), 1.0, 4))) == len(stream)


@pytest.fixture(scope="module")
def audio_visual(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("av"))
    manifests = make_prepared(folder, n_train=4, n_test=2, rate=16000, seconds=2.0, video=True)
    frames = {"n_frames": 3, "size": 32, "sampling": "uniform", "stride": 1, "eval_crops": 2}
    settings = shard_settings(16000, 1.0, frames, frame_rate=4.0)
    write_shards(manifests, os.path.join(folder, "shards"), settings, progress=False)
    return manifests, os.path.join(folder, "shards"), frames, settings


def test_audio_visual_shards_give_the_evaluation_frames_exactly_and_training_frames(audio_visual):
    manifests, folder, frames, settings = audio_visual
    encoders = {"label": encoder_of(LABELS)}
    shards = open_shard_folder(folder, manifests, settings)
    from_files = build_datasets({"test": manifests["test"]}, encoders, 16000, 1.0, frames)["test"]
    from_shards = shard_eval_dataset(shards["test"], manifests["test"], encoders, settings)
    for a, b in zip(from_files, from_shards):
        assert a["frames"].shape == b["frames"].shape == (2, 3, 3, 32, 32)
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["crop_starts"], b["crop_starts"])
        assert torch.equal(a["sig"], b["sig"])
    stream = ShardStream(shards["train"], encoders, settings, 1.0, 2)
    batch = next(iter(stream))
    assert batch.frames.data.shape == (2, 3, 3, 32, 32) and batch.frames.data.dtype == torch.uint8
    assert batch.sig.data.shape == (2, 16000)
    side = FrameTransform(32)  # stored training frames: a short side a little above the frame size
    assert settings["frames"]["short_side"] == 40 and side.size == 32


def test_training_frames_of_a_clip_within_the_span_are_the_frames_training_reads(audio_visual):
    from speechbrain_datar.dataio.frames import frame_times
    from speechbrain_datar.dataio.shards import encode_clip

    manifests, _, frames, _ = audio_visual
    with open(manifests["train"]) as f:
        key, entry = next(iter(json.load(f).items()))
    members, meta = encode_clip(key, entry, "train", shard_settings(16000, 3.0, frames, frame_rate=4.0))
    assert meta["frame_times"] == frame_times(0.0, entry["duration"], 3)  # no grid: the very frames
    assert sorted(name for name in members if name.startswith("frame.")) == [f"frame.{k:05d}.jpg" for k in range(3)]


def test_a_training_frame_that_does_not_decode_costs_its_clip(audio_visual, tmp_path):
    import shutil

    from speechbrain_datar.testing.hostile_shards import tamper

    manifests, folder, frames, settings = audio_visual
    folder = shutil.copytree(folder, tmp_path / "shards")
    clip = sorted(json.load(open(manifests["train"])))[0]
    # a JPEG whose header is whole and whose image data is cut short, the record's SHA-256 made to match
    tamper(str(folder), "train", clip, replace={"frame.00000.jpg": lambda data: data[: len(data) // 3]})
    shards = open_shard_folder(str(folder), manifests, settings)["train"]
    report = str(tmp_path / "damage.jsonl")
    encoders = {"label": encoder_of(LABELS)}
    stream = ShardStream(
        shards, encoders, settings, 1.0, 2, entries=json.load(open(manifests["train"])), damage_report=report
    )
    ids = [i for batch in stream for i in batch.id]
    assert clip not in ids and set(ids) == all_ids(manifests["train"]) - {clip}
    damage = shards_module.DamageReport.read(report)
    assert [d["reason"] for d in damage] == ["bad_frame"] and damage[0]["shard"].endswith("train-000000.tar")
