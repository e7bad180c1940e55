"""Classification heads."""

import torch
from hyperpyyaml import load_hyperpyyaml


def test_heads_build_from_hyperpyyaml_and_return_log_probabilities():
    hparams = load_hyperpyyaml(
        """
classifier: !new:speechbrain_datar.nnet.classifier.Classifier
    input_size: 16
    n_classes: 5
    input_norm: True
epic_heads: !new:speechbrain_datar.nnet.classifier.MultiHeadClassifier
    input_size: 16
    n_classes: {verb: 3, noun: 7}
"""
    )
    emb = torch.randn(4, 1, 16)
    out = hparams["classifier"](emb)["label"]
    assert list(hparams["classifier"](emb)) == ["label"] and out.shape == (4, 1, 5)
    assert torch.allclose(out.exp().sum(-1), torch.ones(4, 1), atol=1e-6)
    heads = hparams["epic_heads"](emb)
    assert {k: v.shape for k, v in heads.items()} == {"verb": (4, 1, 3), "noun": (4, 1, 7)}
    (heads["verb"].sum() + heads["noun"].sum()).backward()
    assert all(p.grad is not None for p in hparams["epic_heads"].parameters())
