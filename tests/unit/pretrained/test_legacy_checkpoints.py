"""Models exported by earlier versions still load and give the same outputs: version 0.1 (before the stages owned
their down-sampling) and version 0.2 (every kind of export: one head, two heads, a tagger, audio-visual).

``tests/data/<model>_v0_1`` were written by ``export_classifier`` of version 0.1 for a tiny
DATAR (random offsets) and AST, with the input ``wav`` and the log-probabilities that
``EncoderClassifier.classify_batch`` gave then (``expected_outputs.pt``). ``tests/data/<kind>_v0_2`` were
written by ``export_classifier`` of version 0.2 for micro models (a DATAR and an AST of one head, a DATAR with
verb and noun heads, a multi-label DATAR tagger, an MBT) with what that version's interfaces returned.
"""

import os
import shutil

import pytest
import torch
from conftest import TEST_DATA as DATA
from speechbrain.inference.classifiers import EncoderClassifier

from speechbrain_datar.lobes.models.datar import DATAR


@pytest.mark.parametrize("model", ["datar", "ast"])
def test_a_version_0_1_export_loads_and_classifies_as_it_did(model, tmp_path):
    source = str(tmp_path / "export")
    shutil.copytree(os.path.join(DATA, f"{model}_v0_1"), source)
    classifier = EncoderClassifier.from_hparams(source=source, savedir=str(tmp_path / "loaded"))
    expected = torch.load(os.path.join(source, "expected_outputs.pt"))
    log_probs = classifier.classify_batch(expected["wav"])[0]
    assert torch.allclose(log_probs, expected["log_probs"], atol=1e-5)


def test_version_0_1_keys_are_mapped_to_the_stages():
    state = torch.load(os.path.join(DATA, "datar_v0_1", "embedding_model.ckpt"))
    assert "down_projs.0.weight" in state and "patch_norm.weight" in state  # the old layout
    model = DATAR(
        "micro", n_mels=32, reference_frames=64, dims=[8, 16, 32, 64], heads=[1, 2, 2, 4], groups=[1, 1, 2, 2]
    )
    model.load_state_dict(state)  # strict
    assert torch.equal(model.stages[1].downsample.weight, state["down_projs.0.weight"])
    assert torch.equal(model.stages[3].downsample.norm.bias, state["down_norms.2.bias"])
    assert torch.equal(model.patch_proj.norm.weight, state["patch_norm.weight"])


# ------------------------------------------------------------------ exports of version 0.2
def _copy(name, tmp_path):
    source = str(tmp_path / name)
    shutil.copytree(os.path.join(DATA, name), source)
    return source, torch.load(os.path.join(source, "expected_outputs.pt"))


@pytest.mark.parametrize("model", ["datar", "ast"])
def test_a_version_0_2_single_head_export_classifies_as_it_did_in_encoder_classifier(model, tmp_path):
    source, expected = _copy(f"{model}_v0_2", tmp_path)
    classifier = EncoderClassifier.from_hparams(source=source, savedir=str(tmp_path / "loaded"))
    assert torch.allclose(classifier.classify_batch(expected["wav"])[0], expected["log_probs"], atol=1e-5)


def test_a_version_0_2_two_head_export_classifies_as_it_did(tmp_path):
    from speechbrain_datar.inference.interfaces import MultiHeadAudioClassifier

    source, expected = _copy("multihead_v0_2", tmp_path)
    result = MultiHeadAudioClassifier.from_hparams(source=source, savedir=str(tmp_path / "loaded")).classify_batch(
        expected["wav"]
    )
    assert set(result) == {"verb", "noun"}
    for key, log_probs in expected["log_probs"].items():
        assert torch.allclose(result[key][0], log_probs, atol=1e-5)


def test_a_version_0_2_tagger_export_tags_as_it_did(tmp_path):
    from speechbrain_datar.inference.interfaces import AudioTagger

    source, expected = _copy("tagger_v0_2", tmp_path)
    probs, _, _, labels = AudioTagger.from_hparams(source=source, savedir=str(tmp_path / "loaded")).classify_batch(
        expected["wav"]
    )
    assert torch.allclose(probs, expected["probs"], atol=1e-5) and labels == expected["labels"]


def test_a_version_0_2_audio_visual_export_classifies_as_it_did(tmp_path):
    from speechbrain_datar.inference.interfaces import AudioVisualClassifier

    source, expected = _copy("mbt_v0_2", tmp_path)
    model = AudioVisualClassifier.from_hparams(source=source, savedir=str(tmp_path / "loaded"))
    result = model.classify_batch(expected["wav"], None, expected["frames"], expected["starts"])
    assert torch.allclose(result["label"][0], expected["log_probs"], atol=1e-5)
