"""Multi-label training: mAP, AUC and d-prime against scikit-learn, the loss, and class-balanced sampling."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

from speechbrain_datar.nnet.classifier import binary_cross_entropy
from speechbrain_datar.training.metrics import TaggingMetrics, d_prime


def test_map_auc_and_d_prime_agree_with_scikit_learn():
    """Random scores with ties (rounded), a class without positives and one without negatives."""
    rng = np.random.default_rng(0)
    targets = (rng.random((200, 7)) < [0.05, 0.1, 0.3, 0.5, 0.8, 0.0, 1.0]).astype(np.float32)
    scores = (np.round(rng.random((200, 7)) * 0.6 + 0.4 * targets, 2) + 0.001).astype(np.float32)
    metrics = TaggingMetrics(7)
    for part in np.array_split(np.arange(200), 3):
        metrics.append([f"c{i}" for i in part], torch.from_numpy(np.log(scores[part])), torch.from_numpy(targets[part]))
    per_class = metrics.per_class()
    for c in range(7):
        if targets[:, c].any():
            assert per_class["AP"][c] == pytest.approx(average_precision_score(targets[:, c], scores[:, c]), abs=1e-6)
        if 0 < targets[:, c].sum() < 200:
            assert per_class["AUC"][c] == pytest.approx(roc_auc_score(targets[:, c], scores[:, c]), abs=1e-6)
    scored_ap = [c for c in range(7) if targets[:, c].any()]
    scored_auc = [c for c in range(7) if 0 < targets[:, c].sum() < 200]
    summary = metrics.summarize()
    assert summary["mAP"] == pytest.approx(
        average_precision_score(targets[:, scored_ap], scores[:, scored_ap]), abs=1e-6
    )
    assert summary["AUC"] == pytest.approx(roc_auc_score(targets[:, scored_auc], scores[:, scored_auc]), abs=1e-6)
    assert summary["d_prime"] == pytest.approx(np.sqrt(2) * __import__("scipy").stats.norm.ppf(summary["AUC"]))
    assert metrics.unscored == 1
    frequencies = targets[:, scored_ap].mean(axis=0)
    assert metrics.label_frequency_baseline() == pytest.approx(frequencies.mean())
    assert d_prime(0.5) == pytest.approx(0.0)


def test_binary_cross_entropy_of_log_sigmoids_equals_torchs_on_logits():
    logits = torch.randn(8, 1, 5) * 30  # confident outputs too
    targets = torch.rand(8, 1, 5)  # soft targets, as mixup makes them
    expected = F.binary_cross_entropy_with_logits(logits, targets)
    got = binary_cross_entropy(F.logsigmoid(logits), targets)
    assert torch.isfinite(got) and torch.allclose(got, expected, rtol=1e-3, atol=2e-5)


def test_balanced_sampling_draws_rare_classes_as_often_as_common_ones(tmp_path):
    """AudioSet's weighted sampler: 18 clips of a common class, 2 of a rare one; drawn with the weights,
    each class appears in about half of the draws (shuffling would give the rare one 10%)."""
    import speechbrain as sb

    from speechbrain_datar.training.recipe import train_loader_options

    entries = {f"c{i}": {"labels": ["common"] if i < 18 else ["rare"]} for i in range(20)}
    path = tmp_path / "train.json"
    path.write_text(json.dumps(entries))
    dataset = sb.dataio.dataset.DynamicItemDataset.from_json(str(path), output_keys=["id"])
    hparams = {"train_dataloader_opts": {"batch_size": 4, "shuffle": True}, "balanced_sampling": True, "seed": 3}
    options = train_loader_options(hparams, dataset, ("labels",))
    assert options["shuffle"] is False and len(options["sampler"]) == 20
    draws = [index for epoch in range(50) for index in (options["sampler"].set_epoch(epoch) or options["sampler"])]
    rare = sum(index >= 18 for index in draws) / len(draws)
    assert 0.4 < rare < 0.6
    assert (
        train_loader_options(dict(hparams, balanced_sampling=False), dataset, ("labels",))
        == hparams["train_dataloader_opts"]
    )
