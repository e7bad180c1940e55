"""Coarse-to-fine training in the recipe: a run killed in a phase resumes in it, and the patch method trains DATAR."""

import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import (
    ROOT,  # noqa: E402
    kill_after_first_checkpoint,
)


def vggsound_run(tmp_path, model_file, train_per_class, test_per_class, *options):
    """The VGGSound recipe's command on a small generated set (micro preset, 1 s clips), and its output folder."""
    from speechbrain_datar.dataio.synthetic import make_vggsound_like

    data = make_vggsound_like(
        str(tmp_path / "data"), train_per_class=train_per_class, test_per_class=test_per_class, seconds=1.0
    )["csv"]
    out = str(tmp_path / "exp")
    common = ["--preset=micro", "--n_classes=6", "--clip_seconds=1.0", "--eval_hop_seconds=0.5", "--batch_size=6"]
    cmd = [
        sys.executable,
        os.path.join(ROOT, "recipes", "VGGSound", "train.py"),
        os.path.join(ROOT, "hparams", model_file),
        f"--data_folder={os.path.dirname(data)}",
        f"--output_folder={out}",
        *common,
        "--num_workers=0",
        "--stats_max_clips=20",
        *options,
    ]
    return cmd, out


@pytest.mark.slow
def test_recipe_resumes_across_a_phase_transition(tmp_path):
    """AST with fshift: phase 1 has a smaller positional grid; a run killed after phase 1 resumes in phase 2."""
    from speechbrain.inference.classifiers import EncoderClassifier

    cmd, out = vggsound_run(
        tmp_path,
        "ast.yaml",
        5,
        2,
        "--lr=0.001",
        "--valid_ratio=0.2",
        "--compression=fshift",
        "--phases=[{factor: 4, epochs: 2}, {factor: 1, epochs: 2}]",
    )
    kill_after_first_checkpoint(cmd, ROOT, out)
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = open(os.path.join(out, "train_log.txt")).read()
    phases = {int(e): (int(p), int(f)) for e, p, f in re.findall(r"epoch: (\d+), .*phase: (\d+), factor: (\d+)", log)}
    assert phases == {1: (1, 4), 2: (1, 4), 3: (2, 1), 4: (2, 1)}
    assert "train_seconds" in log
    classifier = EncoderClassifier.from_hparams(source=os.path.join(out, "pretrained"), savedir=str(tmp_path / "m"))
    assert classifier.mods.embedding_model.encoder.pos_embed.shape[1] == 2 + 12 * 9  # full-resolution grid
    assert classifier.classify_batch(torch.randn(1, 16000))[3][0] in classifier.hparams.label_encoder.lab2ind


@pytest.mark.slow
def test_recipe_trains_datar_with_the_patch_method(tmp_path):
    cmd, out = vggsound_run(
        tmp_path,
        "datar.yaml",
        4,
        1,
        "--valid_ratio=0.25",
        "--compression=patch",
        "--phases=[{factor: 2, epochs: 1}, {factor: 1, epochs: 1}]",
    )
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = open(os.path.join(out, "train_log.txt")).read()
    assert re.findall(r"phase: (\d+), factor: (\d+)", log) == [("1", "2"), ("2", "1")]
    state = torch.load(os.path.join(out, "pretrained", "embedding_model.ckpt"))
    assert state["patch_proj.weight"].shape[-2:] == (4, 4)
