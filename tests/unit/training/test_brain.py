"""The shared Brain's contract with SpeechBrain, the recipe runner's hparams handling and head sizing."""

import inspect
import logging
import os

import pytest
import speechbrain as sb
import torch
from conftest import ROOT
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_datar.errors import DataError
from speechbrain_datar.nnet.classifier import build_classifier
from speechbrain_datar.training.brain import AudioClassificationBrain
from speechbrain_datar.training.recipe import fit_heads_to_labels, load_hparams, warn_if_fine_tuning_rate_from_scratch


def test_speechbrain_still_wraps_modules_the_way_phase_changes_repeat():
    """``on_phase_change`` re-wraps modules with SpeechBrain's private ``_compile`` and ``_wrap_distributed``,
    in the order ``Brain.on_fit_start`` uses them. If SpeechBrain changes that, this fails."""
    source = inspect.getsource(sb.Brain.on_fit_start)
    calls = [source.find(call) for call in ("self._compile()", "self._wrap_distributed()", "self.init_optimizers()")]
    assert all(index >= 0 for index in calls) and calls == sorted(calls)
    for name in ("_compile", "_wrap_distributed"):
        assert list(inspect.signature(getattr(sb.Brain, name)).parameters) == ["self"]
    assert "_compile" in inspect.getsource(AudioClassificationBrain._unwrapped_modules)


def labels(*names):
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(names)
    return encoder


def test_heads_follow_the_prepared_labels_unless_set():
    head = build_classifier(16, None)
    fit_heads_to_labels(head, {"label": labels("a", "b", "c")})
    assert head(torch.randn(2, 1, 16))["label"].shape == (2, 1, 3) and head.init_kwargs["n_classes"] == 3
    heads = build_classifier(16, heads=["verb", "noun"])
    fit_heads_to_labels(heads, {"verb": labels("x", "y"), "noun": labels("p", "q", "r", "s")})
    assert {k: v.shape[-1] for k, v in heads(torch.randn(1, 1, 16)).items()} == {"verb": 2, "noun": 4}
    with pytest.raises(DataError, match="--n_classes=3"):
        fit_heads_to_labels(build_classifier(16, 309), {"label": labels("a", "b", "c")})
    with pytest.raises(DataError, match='--classifier_heads="{verb: 2, noun: 1}"'):
        fit_heads_to_labels(build_classifier(16, None), {"verb": labels("x", "y"), "noun": labels("p")})


@pytest.mark.parametrize("seconds,frames,mask", [(10.0, 1001, 96), (2.0, 201, 20), (1.0, 101, 10)])
def test_fbank_settings_are_set_once_and_time_masks_follow_the_clip(seconds, frames, mask):
    hparams = load_hparams(
        os.path.join(ROOT, "hparams", "datar.yaml"),
        {"data_folder": "/data", "preset": "micro", "clip_seconds": seconds},
    )
    assert hparams["eval_window_frames"] == frames and hparams["time_mask_frames"] == mask
    assert hparams["feature_augment"].augmentations["SpectrogramDrop1"].drop_length_high == mask
    features = hparams["compute_features"]
    assert features(torch.randn(1, int(seconds * 16000))).shape[1] == frames
    assert (
        hparams["coarse_to_fine"].features is features
        and hparams["coarse_to_fine"].encoder is hparams["embedding_model"]
    )


def test_starting_from_scratch_at_the_fine_tuning_rate_logs_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        warn_if_fine_tuning_rate_from_scratch({"init_from": None, "lr": 1e-5})
        warn_if_fine_tuning_rate_from_scratch({"init_from": None, "lr": 5e-4})
    assert len(caplog.records) == 1 and "fine-tuning rate" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()
