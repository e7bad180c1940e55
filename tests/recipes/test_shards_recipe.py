"""Training and evaluation from tar shards through the real recipe: evaluation equals evaluation from the
files, and two "nodes" of one process each (loopback, gloo) train from shards to the same weights with
every clip used exactly once per epoch."""

import glob
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, TINY_VGGSOUND, kill_after_first_checkpoint, tiny_vggsound_folder

TRAIN = os.path.join(ROOT, "recipes", "VGGSound", "train.py")
HPARAMS = os.path.join(ROOT, "hparams", "datar.yaml")
LAUNCHER = os.path.join(ROOT, "tests", "recipe_saving_every_process.py")

TINY = dict(TINY_VGGSOUND, batch_size=4, shard_megabytes=0.2)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    return tiny_vggsound_folder(tmp_path_factory, seconds=1.5)  # longer than the crop: random crops from shards


def options(data_folder, output_folder, epochs, **extra):
    values = dict(TINY, data_folder=data_folder, output_folder=output_folder, number_of_epochs=epochs, **extra)
    return [f"--{k}={v}" for k, v in values.items()]


def run(cmd, **kwargs):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, **kwargs)


def metrics_of(folder):
    with open(os.path.join(folder, "test_metrics.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_shards_written_once_train_through_a_kill_and_evaluate_as_the_files_do(data_folder, tmp_path):
    out = str(tmp_path / "exp")
    cmd = [sys.executable, LAUNCHER, HPARAMS] + options(data_folder, out, 1, data_format="shards", num_workers=2)
    cmd += ["--ckpt_interval_steps=3", "--ckpt_interval_minutes=0"]
    # written once, then the run stops
    result = run(cmd + ["--write_shards_only=True"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert not glob.glob(os.path.join(out, "save", "CKPT+*"))  # nothing trained
    shards = os.path.join(out, "save", "shards")
    with open(os.path.join(shards, "shards_report.json")) as f:
        report = json.load(f)
    assert report["train"]["shards"] > 2 and report["train"]["clips"] == len(prepared_ids(out))
    check = run([sys.executable, "-m", "speechbrain_datar.dataio.shards", "check", shards])
    assert check.returncode == 0 and "are whole" in check.stdout, check.stdout + check.stderr
    # killed after the intra-epoch checkpoint of step 3, resumed: the epoch ends with the clips it had left
    kill_after_first_checkpoint(cmd, ROOT, out)
    with open(glob.glob(os.path.join(out, "save", "CKPT+*", "brain.ckpt"))[0]) as f:
        checkpointed_steps = yaml.safe_load(f)["step"]
    assert checkpointed_steps == 3
    before = recorded_ids(out, 0, up_to_step=checkpointed_steps)[1]  # what the checkpoint holds
    os.rename(os.path.join(out, "ids_rank0.txt"), os.path.join(out, "ids_killed.txt"))
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    after = recorded_ids(out, 0)[1]
    assert len(before) == 3 * TINY["batch_size"]
    assert sorted(before + after) == sorted(prepared_ids(out))  # every clip once in the epoch
    # the trained checkpoint evaluated from the media files: the metrics the shards gave
    from_shards = metrics_of(out)
    result = run([sys.executable, TRAIN, HPARAMS] + options(data_folder, out, 1, data_format="files"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics_of(out) == from_shards
    # shards written at another rate are refused, in one line
    result = run(
        [sys.executable, TRAIN, HPARAMS]
        + options(data_folder, str(tmp_path / "other"), 1, data_format="shards", shards_folder=shards, sample_rate=8000)
    )
    assert result.returncode != 0
    assert "other settings" in result.stderr and "sample_rate" in result.stderr
    assert "Traceback" not in result.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_from_shards_end_with_the_same_weights_and_use_every_clip_once_per_epoch(data_folder, tmp_path):
    out = str(tmp_path / "exp")
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    nodes = []
    for node_rank in (0, 1):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            f"--node_rank={node_rank}",
            "--nproc_per_node=1",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            LAUNCHER,
            HPARAMS,
        ] + options(data_folder, out, 2, data_format="shards", num_workers=1, distributed_backend="gloo")
        nodes.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outputs = [node.communicate(timeout=900) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    weights = [torch.load(os.path.join(out, f"weights_rank{rank}.pt")) for rank in (0, 1)]
    assert list(weights[0]) == list(weights[1])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    with open(os.path.join(out, "train_log.txt")) as f:
        losses = [float(loss) for loss in re.findall(r"train loss: ([0-9.e+-]+)", f.read())]
    assert len(losses) == 2 and losses[1] < losses[0]  # it learns from the shards
    seen = [recorded_ids(out, rank) for rank in (0, 1)]
    train_ids = sorted(prepared_ids(out))
    for epoch in (1, 2):
        assert sorted(seen[0][epoch] + seen[1][epoch]) == train_ids  # every clip once, none twice
        assert seen[0][epoch] and seen[1][epoch]


def recorded_ids(out, rank, up_to_step=None):
    """``{epoch: [clip id, ...]}`` the launcher recorded for a process (up to a step of the first epoch)."""
    ids = {}
    with open(os.path.join(out, f"ids_rank{rank}.txt")) as f:
        for line in f:
            epoch, step, clip = line.split()
            if up_to_step is None or int(step) <= up_to_step:
                ids.setdefault(int(epoch), []).append(clip)
    return ids


def prepared_ids(out):
    with open(os.path.join(out, "save", "train.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_a_damaged_training_clip_and_a_damaged_test_clip_cost_those_clips_and_the_run_exports(data_folder, tmp_path):
    from speechbrain_datar.dataio.shards import DamageReport
    from speechbrain_datar.testing.hostile_shards import npy, tamper

    out = str(tmp_path / "exp")
    cmd = [sys.executable, TRAIN, HPARAMS] + options(data_folder, out, 1, data_format="shards", shard_megabytes=1000)
    result = run(cmd + ["--write_shards_only=True"])
    assert result.returncode == 0, result.stderr[-3000:]
    shards = os.path.join(out, "save", "shards")
    train, test = (json.load(open(os.path.join(out, "save", f"{s}.json"))) for s in ("train", "test"))
    bad_train, bad_test = sorted(train)[0], sorted(test)[0]
    samples = int(round(train[bad_train]["duration"] * 16000))
    nan_audio = npy(np.full(samples, np.nan, dtype=np.float32))
    tamper(shards, "train", bad_train, audio=nan_audio)  # NaN samples, the record's SHA-256 made to match
    tamper(shards, "test", bad_test, edit_meta=lambda meta: meta.update(label="someone else's label"))
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(os.path.join(out, "pretrained", "embedding_model.ckpt"))
    metrics = metrics_of(out)
    assert all(np.isfinite(v) for v in metrics.values())
    damage = DamageReport.read(os.path.join(out, "shard_damage.jsonl"))
    reasons = {(line["shard"].split("/")[-1], line["reason"]) for line in damage}
    assert reasons == {("train-000000.tar", "non_finite"), ("test-000000.tar", "manifest_differs")}, damage
    assert any(bad_train in line["message"] for line in damage) and any(bad_test in line["message"] for line in damage)
    predictions = open(os.path.join(out, "test_predictions.csv")).read()
    assert bad_test not in predictions and len(predictions.splitlines()) == len(test)  # header + the others
