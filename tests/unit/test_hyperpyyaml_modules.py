"""Every public module builds from HyperPyYAML with !new: and runs forward and backward on CPU."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

CASES = {
    "DeformableAttention": (
        "speechbrain_datar.nnet.deformable_attention.DeformableAttention",
        "dim: 8\n    num_heads: 2\n    num_groups: 2\n    bias_table_size: [4, 6]\n    offset_stride: 2",
        lambda: (torch.randn(2, 4, 6, 8),),
    ),
    "WindowAttention": (
        "speechbrain_datar.nnet.window_attention.WindowAttention",
        "dim: 8\n    num_heads: 2\n    window_size: 3\n    shift_size: 1",
        lambda: (torch.randn(2, 4, 7, 8),),
    ),
    "LearnableInputAdaptor": (
        "speechbrain_datar.nnet.input_adaptor.LearnableInputAdaptor",
        "strength: 0.005\n    kernel_size: 5",
        lambda: (torch.randn(2, 30, 16),),
    ),
    "RandomPerturbation": (
        "speechbrain_datar.nnet.input_adaptor.RandomPerturbation",
        "distribution: gaussian\n    scale: 0.01",
        lambda: (torch.randn(2, 30, 16, requires_grad=True),),
    ),
    "DATAR": (
        "speechbrain_datar.lobes.models.datar.DATAR",
        "preset: micro\n    n_mels: 32\n    reference_frames: 64\n    drop_path_rate: 0.1",
        lambda: (torch.randn(2, 70, 32), torch.tensor([1.0, 0.5])),
    ),
    "AST": (
        "speechbrain_datar.lobes.models.ast.AST",
        "preset: micro\n    n_mels: 32\n    target_length: 64",
        lambda: (torch.randn(2, 70, 32), torch.tensor([1.0, 0.5])),
    ),
    "Classifier": (
        "speechbrain_datar.nnet.classifier.Classifier",
        "input_size: 8\n    n_classes: 3",
        lambda: (torch.randn(2, 1, 8),),
    ),
    "DatasetNormalization": (
        "speechbrain_datar.dataio.normalization.DatasetNormalization",
        "mean: -3.0\n    std: 2.0",
        lambda: (torch.randn(2, 10, 4, requires_grad=True), torch.ones(2)),
    ),
    "SlidingWindowEmbedding": (
        "speechbrain_datar.inference.sliding_window.SlidingWindowEmbedding",
        "encoder: !new:speechbrain_datar.lobes.models.datar.DATAR\n        preset: micro\n        n_mels: 32\n"
        "    window_frames: 40\n    hop_frames: 20",
        lambda: (torch.randn(2, 90, 32), torch.tensor([1.0, 0.3])),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_module_builds_runs_forward_and_backward(name):
    path, args, make_inputs = CASES[name]
    module = load_hyperpyyaml(f"module: !new:{path}\n    {args}\n")["module"]
    module.train()
    inputs = make_inputs()
    out = module(*inputs)
    out = next(iter(out.values())) if isinstance(out, dict) else out
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in module.parameters()]
    if grads:
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert inputs[0].grad is not None
