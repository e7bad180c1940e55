"""Hostile and damaged shards: each damaged record costs its clip (or the rest of its shard), named with its reason,
in training, evaluation and ``check`` alike; damaged folder files are one-line errors; the writer never writes
through a link; and the memory cases stay far below 1 GB."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import speechbrain as sb

from speechbrain_datar.dataio.shards import (
    DamageReport,
    ShardStream,
    check_shards,
    open_shard_folder,
    shard_eval_dataset,
    shard_settings,
    write_shards,
)
from speechbrain_datar.errors import DataError
from speechbrain_datar.testing.hostile_shards import (
    LABELS,
    compress_padded,
    declare_huge_member,
    fix_record,
    make_shards,
    members_of,
    npy,
    npy_header_only,
    tamper,
    write_members,
)

SETTINGS = shard_settings(16000)


@pytest.fixture
def shards(tmp_path):
    return make_shards(str(tmp_path))


def trained_ids(manifests, folder, tmp_path):
    """The ids one training epoch streams (entries from the manifest, damage reported to a file), and the report."""
    report = str(tmp_path / "damage.jsonl")
    shards = open_shard_folder(folder, manifests, SETTINGS)["train"]
    entries = json.load(open(manifests["train"]))
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.update_from_iterable(LABELS)
    stream = ShardStream(shards, {"label": encoder}, SETTINGS, 1.0, 2, entries=entries, damage_report=report)
    return {i for batch in stream for i in batch.id}, DamageReport.read(report)


NAN_AUDIO = npy(np.array([0.1, np.nan] * 4000, dtype=np.float32))
#: case -> (what is done to clip train1, the reason reported)
TRAINING_CASES = {
    "NaN samples": (dict(audio=NAN_AUDIO), "non_finite"),
    "object array (pickle)": (dict(audio=npy(np.array([{"a": 1}] * 8000, dtype=object))), "bad_audio"),
    "header declaring 10^12 samples": (dict(audio=npy_header_only((10**12,))), "bad_audio"),
    "negative shape": (dict(audio=npy_header_only((-5,))), "bad_audio"),
    "5e9 samples": (dict(audio=npy_header_only((5_000_000_000,))), "bad_audio"),
    "float64 samples": (dict(audio=npy(np.zeros(8000))), "bad_audio"),
    "garbage audio": (dict(audio=os.urandom(32000)), "bad_audio"),
    "invalid JSON": (dict(raw_json=b'{"id": "train1", '), "bad_json"),
    "deeply nested JSON": (dict(raw_json=b'{"id": ' + b"[" * 20000 + b"]" * 20000 + b"}"), "bad_json"),
    "100,000-digit number": (dict(raw_json=b'{"id": "train1", "samples": ' + b"9" * 100000 + b"}"), "bad_json"),
    "duration 1e999": (dict(raw_json=b'{"id": "train1", "duration": 1e999}'), "bad_json"),
    "duration as text": (dict(edit_meta=lambda m: m.update(duration="half a second")), "bad_json"),
    "no id": (dict(edit_meta=lambda m: m.pop("id")), "bad_json"),
    "JSON array": (dict(raw_json=b'["train1"]'), "bad_json"),
    "label changed, hash kept": (dict(edit_meta=lambda m: m.update(label="bark"), rehash=False), "manifest_differs"),
    "label changed, hash recomputed": (dict(edit_meta=lambda m: m.update(label="bark")), "manifest_differs"),
    "duplicated JSON key": (dict(raw_json=None), "bad_json"),
    "a second JSON member": (None, "bad_json"),
}


@pytest.mark.parametrize("case", sorted(TRAINING_CASES))
def test_a_damaged_training_record_costs_its_clip_with_its_reason_and_check_agrees(shards, tmp_path, case):
    manifests, folder = shards
    change, reason = TRAINING_CASES[case]
    if case == "a second JSON member":
        path = os.path.join(folder, "train-000000.tar")
        members = members_of(path)
        first_json = members[0]
        changed = json.loads(first_json[1])
        changed["label"] = "chirp" if changed["label"] == "bark" else "bark"
        twin = tarfile.TarInfo(first_json[0].name)
        write_members(path, [first_json, (twin, json.dumps(changed).encode())] + members[1:], path[:-4] + ".json")
        ids, report = trained_ids(manifests, folder, tmp_path)
        assert ids == {f"train{i}" for i in range(4)} - {changed["id"]}
        assert [line["reason"] for line in report] == ["bad_json"], report
        assert "bad_json" in check_shards(folder, manifests)["train-000000.tar"]
        return
    if case == "duplicated JSON key":
        record = json.loads(members_of(os.path.join(folder, "train-000000.tar"))[0][1])
        change = dict(raw_json=json.dumps(record)[:-1].encode() + b', "label": "chirp"}')
        clip = record["id"]
    else:
        clip = "train1"
    tamper(folder, "train", clip, **change)
    ids, report = trained_ids(manifests, folder, tmp_path)
    assert ids == {f"train{i}" for i in range(4)} - {clip}
    assert [line["reason"] for line in report] == [reason], report
    problems = check_shards(folder, manifests)  # check, given the manifests, finds what training finds
    assert list(problems) == ["train-000000.tar"] and reason in problems["train-000000.tar"], problems
    if reason != "manifest_differs":  # without them, every check but the comparison with the manifest
        assert reason in check_shards(folder).get("train-000000.tar", ""), check_shards(folder)


EVALUATION_CASES = {
    "a byte of a member name flipped": "stray_member",
    "a stray readme.txt": "stray_member",
    "a symlink member": "stray_member",
    "compressed, padded to its size": "broken_shard",
}


@pytest.mark.parametrize("case", sorted(EVALUATION_CASES))
def test_damage_in_an_evaluation_shard_costs_what_is_damaged_and_evaluation_goes_on(shards, tmp_path, case):
    manifests, folder = shards
    path = os.path.join(folder, "test-000000.tar")
    members = members_of(path)
    if case == "a byte of a member name flipped":
        info = next(info for info, _ in members if info.name.endswith("audio.npy"))
        info.name = info.name.replace("audio", "audiX")
        write_members(path, members, os.path.join(folder, "test-000000.json"))
    elif case == "a stray readme.txt":
        write_members(path, members + [(tarfile.TarInfo("readme.txt"), b"hello")], path[:-4] + ".json")
    elif case == "a symlink member":
        link = tarfile.TarInfo("000000009.audio.npy")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        write_members(path, members[:2] + [(link, b"")] + members[2:], path[:-4] + ".json")
    else:
        compress_padded(path)
    report = str(tmp_path / "damage.jsonl")
    shards_of = open_shard_folder(folder, manifests, SETTINGS)
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.update_from_iterable(LABELS)
    if case == "compressed, padded to its size":
        with pytest.raises(DataError, match="no clip of"):  # the only test shard: nothing is left to evaluate
            shard_eval_dataset(shards_of["test"], manifests["test"], {"label": encoder}, SETTINGS, report)
    else:
        dataset = shard_eval_dataset(shards_of["test"], manifests["test"], {"label": encoder}, SETTINGS, report)
        items = [dataset[i] for i in range(len(dataset))]
        assert 3 <= len(items) <= 4 and all(item["sig"].shape == (8000,) for item in items)
    assert EVALUATION_CASES[case] in {line["reason"] for line in DamageReport.read(report)}
    assert "test-000000.tar" in check_shards(folder)


def test_a_stray_file_in_the_folder_is_passed_over_and_damaged_folder_files_are_one_line(shards, tmp_path):
    manifests, folder = shards
    with open(os.path.join(folder, "notes.json"), "w") as f:
        f.write("my notes")
    assert check_shards(folder) == {}
    record = os.path.join(folder, "train-000000.json")
    original = open(record).read()
    for content in ("[1, 2]", "{", json.dumps({k: v for k, v in json.loads(original).items() if k != "ids"})):
        with open(record, "w") as f:
            f.write(content)
        with pytest.raises(DataError, match="incomplete") as error:  # the split's only shard is left out
            open_shard_folder(folder, manifests, SETTINGS)
        assert "\n" not in str(error.value)
        assert "train-000000.json" in check_shards(folder)
        with pytest.raises(DataError, match="remove it and its shard"):
            write_shards(manifests, folder, SETTINGS, progress=False)
    with open(record, "w") as f:
        f.write(original)
    info = os.path.join(folder, "shards.json")
    for content in ("[]", "{", '{"settings": {}}'):
        with open(info, "w") as f:
            f.write(content)
        for call in (
            lambda: open_shard_folder(folder, manifests, SETTINGS),
            lambda: write_shards(manifests, folder, SETTINGS, progress=False),
        ):
            with pytest.raises(DataError) as error:
                call()
            assert "shards.json" in str(error.value) and "\n" not in str(error.value)


def test_the_writer_never_writes_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    manifests, _ = make_shards(str(tmp_path / "first"))
    folder = tmp_path / "planted"
    folder.mkdir()
    targets = []

    def plant(name):
        target = outside / name
        target.write_text("precious")
        targets.append(target)
        if os.path.lexists(folder / name):
            os.remove(folder / name)
        os.symlink(target, folder / name)

    for name in ("shards.json.tmp", "shards_report.json.tmp", "train-000000.json.tmp", "test-000000.json.tmp"):
        plant(name)
    write_shards(manifests, str(folder), SETTINGS, progress=False)
    # a shard to write again, with links where its files go
    os.remove(folder / "train-000000.json")
    for name in ("train-000000.tar.part", "train-000000.tar", "train-000000.json.tmp", "shards_report.json.tmp"):
        plant(name)
    write_shards(manifests, str(folder), SETTINGS, progress=False)
    assert all(target.read_text() == "precious" for target in targets)
    assert not [name for name in os.listdir(folder) if os.path.islink(folder / name)]
    assert check_shards(str(folder)) == {}


MEMORY_CASES = {
    "sparse member declared at 6 GiB, training": "train",
    "sparse member declared at 6 GiB, evaluation": "evaluate",
    "record claiming 10^12 clips": "train",
    "100,000 tiny members": "train",
    "100,000 tiny members, check": "check",
}


@pytest.mark.parametrize("case", sorted(MEMORY_CASES))
def test_memory_bombs_in_shards_stay_far_below_1_gb(shards, tmp_path, case):
    manifests, folder = shards
    operation = MEMORY_CASES[case]
    split = "test" if operation == "evaluate" else "train"
    path = os.path.join(folder, f"{split}-000000.tar")
    record = path[:-4] + ".json"
    members = members_of(path)
    if case.startswith("sparse member"):
        declare_huge_member(path)
    elif case == "record claiming 10^12 clips":
        fix_record(path, record, clips=10**12)
    else:
        tiny = [(tarfile.TarInfo(f"x{i:08d}"), b"") for i in range(100_000)]
        write_members(path, members + tiny, record)
    command = [sys.executable, "-m", "speechbrain_datar.testing.hostile_shards", operation, folder, manifests[split]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["peak_mib"] < 1024, outcome
    assert outcome["warning_lines"] <= 25, outcome
    assert f"{split}-000000" in outcome["outcome"], outcome
