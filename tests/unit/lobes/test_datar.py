"""The DATAR encoder: presets, DAT-T layout, variable length, ablations, precision and devices."""

import pytest
import torch
from conftest import available_devices, randomise_offsets
from hyperpyyaml import load_hyperpyyaml

from speechbrain_datar.lobes.models.datar import DATAR, PRESETS
from speechbrain_datar.nnet.deformable_attention import DeformableAttention
from speechbrain_datar.nnet.input_adaptor import LearnableInputAdaptor
from speechbrain_datar.nnet.window_attention import WindowAttention

# DAT-T (LeapLabTHU/DAT, CVPR 2022 release, 224x224, 1000 classes) has 28,319,138
# parameters. Without its classification head (768 * 1000 + 1000) and with a
# one-channel patch stem (two RGB input channels of 96 * 4 * 4 weights fewer):
DAT_T_BACKBONE_MONO = 28_319_138 - 769_000 - 2 * 96 * 16


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_tiny_preset_has_the_dat_t_layout():
    model = DATAR("tiny", n_mels=224, reference_frames=224, input_adaptor="none")
    assert count(model) == DAT_T_BACKBONE_MONO
    kinds = [
        ["D" if isinstance(b.attn, DeformableAttention) else ("S" if b.attn.shift_size[0] else "L") for b in stage]
        for stage in model.stages
    ]
    assert kinds == [["L", "S"], ["L", "S"], ["L", "D"] * 3, ["L", "D"]]
    deformable = [b.attn for stage in model.stages for b in stage if isinstance(b.attn, DeformableAttention)]
    assert [(a.num_heads, a.num_groups, a.offset_generator[0].kernel_size) for a in deformable] == [
        (12, 3, (5, 5))
    ] * 3 + [(24, 6, (3, 3))]
    assert [a.rpe_table.shape for a in deformable] == [(12, 27, 27)] * 3 + [(24, 13, 13)]
    assert [s[0].attn.shift_size for s in model.stages[:2]] == [(0, 0), (0, 0)]
    assert [s[1].attn.shift_size for s in model.stages[:2]] == [(4, 4), (4, 4)]


def test_tiny_preset_on_a_10_second_clip():
    model = DATAR("tiny").eval()
    # the audio default only changes the bias tables (8x64 and 4x32 maps) and adds the adaptor
    expected = DAT_T_BACKBONE_MONO - 3 * 12 * 27 * 27 - 24 * 13 * 13 + 3 * 12 * 15 * 127 + 24 * 7 * 63 + 3 * 3 + 1
    assert count(model) == expected
    shapes = []
    hooks = [s[-1].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for s in model.stages]
    with torch.no_grad():
        out = model.forward_features(torch.randn(2, 1024, 128))
    for hook in hooks:
        hook.remove()
    assert shapes == [(2, 32, 256, 96), (2, 16, 128, 192), (2, 8, 64, 384), (2, 4, 32, 768)]
    assert out["embedding"].shape == (2, 1, 768)
    assert out["mask"] is None  # 1024 x 128 needs no padding


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build_from_hyperpyyaml(preset):
    hparams = load_hyperpyyaml(
        f"""
embedding_model: !new:speechbrain_datar.lobes.models.datar.DATAR
    preset: {preset}
    n_mels: 64
    reference_frames: 256
"""
    )
    model = hparams["embedding_model"]
    assert model.embedding_dim == PRESETS[preset]["dims"][-1]
    assert len(model.stages[2]) == PRESETS[preset]["depths"][2]


def test_micro_forward_and_backward_reach_every_parameter():
    model = randomise_offsets(DATAR("micro", n_mels=64), std=0.3)
    feats = torch.randn(2, 150, 64)
    emb = model(feats, torch.tensor([1.0, 0.7]))
    assert emb.shape == (2, 1, 128)
    emb.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


@pytest.mark.parametrize("short,long", [(137, 300), (1, 64), (33, 1000), (250, 257)])
def test_clip_output_does_not_depend_on_its_batch(short, long):
    model = randomise_offsets(DATAR("micro"), std=1.0).eval()
    clip = torch.randn(1, short, 128)
    other = torch.randn(1, long, 128)
    batch = torch.zeros(2, long, 128)
    batch[0, :short] = clip[0]
    batch[1] = other[0]
    with torch.no_grad():
        alone = model(clip)
        together = model(batch, torch.tensor([short / long, 1.0]))
        other_alone = model(other)
    assert torch.allclose(alone[0], together[0], atol=1e-4)
    assert torch.allclose(other_alone[0], together[1], atol=1e-4)


def test_padding_is_excluded_from_pooling_and_stays_zero():
    model = randomise_offsets(DATAR("micro"), std=1.0).eval()
    feats = torch.randn(2, 100, 128)
    with torch.no_grad():
        out = model.forward_features(feats, torch.tensor([0.4, 1.0]))
    mask = out["mask"]
    assert mask.shape == (2, 4, 4) and mask[0].sum() == 4 * 2 and mask[1].all()
    assert torch.all(out["feature_map"][~mask] == 0)
    assert torch.all(out["adapted"][0, 40:] == 0) and torch.all(out["adapted"][0, :40].abs().sum(-1) > 0)
    manual = out["feature_map"][0, :, :2].mean(dim=(0, 1))
    assert torch.allclose(out["embedding"][0, 0], manual, atol=1e-6)


@pytest.mark.parametrize("frames", [1, 2, 3, 7, 31, 33, 513, 6000])
def test_any_length_gives_finite_embeddings(frames):
    model = DATAR("micro").eval()
    with torch.no_grad():
        emb = model(torch.randn(1, frames, 128))
    assert torch.isfinite(emb).all()


def test_three_minutes_of_audio_in_inference():
    model = DATAR("micro").eval()
    with torch.no_grad():
        emb = model(torch.randn(1, 18000, 128))
    assert torch.isfinite(emb).all()


def test_bad_inputs_are_clear_errors():
    model = DATAR("micro")
    with pytest.raises(ValueError, match="no frames"):
        model(torch.randn(1, 0, 128))
    with pytest.raises(ValueError, match="128 mel bins"):
        model(torch.randn(1, 100, 80))
    with pytest.raises(ValueError, match=r"\[batch, time, n_mels\]"):
        model(torch.randn(100, 128))
    with pytest.raises(ValueError, match="relative lengths"):
        model(torch.randn(2, 100, 128), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="unknown preset"):
        DATAR("huge")
    with pytest.raises(ValueError, match="block type"):
        DATAR("micro", stage_spec=[["L", "X"], ["L", "S"], ["L", "D"], ["L", "D"]])


def test_ablation_switches():
    no_deform = DATAR("micro", deformable=False)
    assert not any(isinstance(m, DeformableAttention) for m in no_deform.modules())
    assert sum(isinstance(m, WindowAttention) for m in no_deform.modules()) == 8
    assert isinstance(DATAR("micro").input_adaptor, LearnableInputAdaptor)
    assert isinstance(DATAR("micro", input_adaptor="none").input_adaptor, torch.nn.Identity)
    gauss = DATAR("micro", input_adaptor="gaussian", adaptor_strength=0.005)
    assert gauss.input_adaptor.scale == 0.005


def test_sampling_points_of_every_deformable_block():
    model = randomise_offsets(DATAR("micro"), std=1.0).eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 256, 128), return_sampling=True)
    sampling = out["sampling"]
    assert [(s["stage"], s["block"], s["stride"]) for s in sampling] == [(2, 1, (16, 16)), (3, 1, (32, 32))]
    assert sampling[0]["positions"].shape == (1, 2, 8, 16, 2)
    moved = (sampling[0]["positions"] - sampling[0]["references"]).abs()
    assert moved.max() > 0.1 and moved.max() <= 1.0 + 1e-6


@pytest.mark.parametrize("device", available_devices())
def test_bf16_autocast_forward_and_backward(device):
    model = DATAR("micro").to(device)
    feats = torch.randn(2, 200, 128, device=device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        emb = model(feats, torch.tensor([1.0, 0.6], device=device))
    emb.float().square().sum().backward()
    assert torch.isfinite(emb.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("device", available_devices())
def test_double_precision_matches_float(device):
    model = randomise_offsets(DATAR("micro"), std=0.5).eval().to(device)
    feats = torch.randn(2, 90, 128, device=device)
    with torch.no_grad():
        single = model(feats, torch.tensor([1.0, 0.5], device=device))
        double = model.double()(feats.double(), torch.tensor([1.0, 0.5], device=device))
    assert double.dtype == torch.float64
    assert torch.allclose(single.double(), double, atol=1e-4)
