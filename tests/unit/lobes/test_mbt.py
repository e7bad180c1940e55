"""MBT's encoder: information flows only where the paper says, and it equals a restatement of scenic's."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_datar.lobes.models.mbt import MBT

SIZES = dict(n_mels=32, audio_frames=64, n_frames=2, image_size=32)  # 8 + 8 patches per modality


def inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 64, 32, generator=g), torch.randn(batch, 2, 3, 32, 32, generator=g)


def model(**kwargs):
    torch.manual_seed(0)
    return MBT("micro", **SIZES, **kwargs).eval()


def video_states(mbt, feats, frames):
    """Video tokens after each layer, recorded by hooks."""
    states = []
    hooks = [
        b.register_forward_hook(lambda m, a, out: states.append(out.detach().clone())) for b in mbt.blocks["video"]
    ]
    with torch.no_grad():
        out = mbt.forward_features(feats, frames)
    for hook in hooks:
        hook.remove()
    return states, out


@pytest.mark.parametrize("fusion", ["bottleneck", "cross_attention"])
def test_late_fusion_keeps_the_streams_apart(fusion):
    mbt = model(fusion_layer=4, fusion=fusion)
    feats, frames = inputs()
    with torch.no_grad():
        a = mbt.forward_features(feats, frames)
        b = mbt.forward_features(torch.randn_like(feats), frames)
    assert torch.equal(a["video"], b["video"]) and not torch.allclose(a["audio"], b["audio"])


@pytest.mark.parametrize("fusion", ["bottleneck", "cross_attention"])
def test_fusion_starts_at_the_fusion_layer(fusion):
    mbt = model(fusion_layer=2, fusion=fusion)
    feats, frames = inputs()
    before, a = video_states(mbt, feats, frames)
    after, b = video_states(mbt, feats + torch.randn_like(feats), frames)
    for layer in range(2):  # below L_f, audio reaches no visual token
        assert torch.equal(before[layer][:, : after[layer].shape[1]], after[layer][:, : before[layer].shape[1]])
    assert not torch.allclose(a["cls"][:, 1], b["cls"][:, 1], atol=1e-4)  # from L_f on, it does


def test_single_modality_models_and_bottleneck_init():
    audio_only = model(modalities=("audio",))
    feats, frames = inputs()
    assert audio_only(feats).shape == (2, 1, 32) and "video" not in audio_only.tokenizers
    assert audio_only.bottleneck.shape == (1, 5, 32)  # B = 4, plus one for the CLS tokens (as scenic)
    assert abs(MBT("micro", **SIZES, embed_dim=256).bottleneck.std().item() - 0.02) < 0.005
    video_only = model(modalities=("video",))
    assert video_only(None, frames=frames).shape == (2, 1, 32)
    with pytest.raises(ValueError, match="modalities"):
        MBT("micro", modalities=("audio", "smell"))


def test_mean_pooling_averages_every_token_of_every_modality():
    mbt = model(pooling="mean")
    feats, frames = inputs()
    with torch.no_grad():
        out = mbt.forward_features(feats, frames)
        pooled = mbt(feats, frames=frames)
    assert pooled.shape == (2, 1, 32)
    assert torch.allclose(pooled[:, 0], torch.cat([out["audio"], out["video"]], dim=1).mean(dim=1), atol=1e-6)


@pytest.mark.parametrize("fusion,pooling", [("bottleneck", "cls"), ("cross_attention", "mean")])
def test_a_clips_output_does_not_depend_on_its_batch(fusion, pooling):
    """Padded spectrogram patches are masked out of attention and of mean pooling."""
    mbt = model(fusion=fusion, pooling=pooling)
    feats, frames = inputs()
    padded = feats.clone()
    padded[1, 40:] = 100.0  # what lies beyond a clip's length must not matter
    with torch.no_grad():
        together = mbt(padded, torch.tensor([1.0, 40 / 64]), frames=frames)
        alone = mbt(feats[1:, :40], None, frames=frames[1:])
        audio_alone = model(fusion=fusion, pooling=pooling, modalities=("audio",))(feats[1:, :40])
        audio_together = model(fusion=fusion, pooling=pooling, modalities=("audio",))(
            padded, torch.tensor([1.0, 40 / 64])
        )
    assert torch.allclose(together[1], alone[0], atol=1e-5)
    assert torch.allclose(audio_together[1], audio_alone[0], atol=1e-5)


def test_any_audio_length_through_interpolated_positions():
    mbt = model(modalities=("audio",))
    feats, _ = inputs()
    with torch.no_grad():
        longer = mbt.forward_features(torch.randn(2, 100, 32))  # 6 time patches; the grid has 4
        short = mbt.forward_features(torch.randn(2, 5, 32))  # shorter than a patch: padded to one
    assert longer["audio"].shape == (2, 1 + 2 * 6, 32) and short["audio"].shape == (2, 1 + 2 * 1, 32)
    assert torch.isfinite(longer["audio"]).all()


def test_coarse_to_fine_changes_the_audio_stream_only():
    from speechbrain_datar.lobes.features import Fbank
    from speechbrain_datar.training.coarse_to_fine import CoarseToFineSchedule

    mbt = model()
    fine = {k: v.clone() for k, v in mbt.state_dict().items()}
    features = Fbank(n_mels=32)
    schedule = CoarseToFineSchedule(
        [{"factor": 4, "epochs": 1}, {"factor": 1, "epochs": 1}], "fshift", features=features, encoder=mbt
    )
    schedule.enter(0)
    assert mbt.pos_embed["audio"].shape == (1, 1 + 2 * 1, 32)  # 64 / 4 frames: one column of patches
    coarse = features(torch.randn(2, 16000 * 64 // 100))
    _, frames = inputs()
    with torch.no_grad():
        assert mbt(coarse, frames=frames).shape == (2, 2, 32)
    assert torch.equal(mbt.pos_embed["video"], fine["pos_embed.video"])
    schedule.enter(1)
    assert mbt.pos_embed["audio"].shape == fine["pos_embed.audio"].shape
    wide = CoarseToFineSchedule([{"factor": 2, "epochs": 1}, {"factor": 1, "epochs": 1}], "patch", encoder=mbt)
    wide.enter(0)
    assert mbt.tokenizers["audio"].proj.weight.shape[-2:] == (16, 32)
    with torch.no_grad():
        assert mbt.forward_features(inputs()[0])["audio"].shape == (2, 1 + 2 * 2, 32)
    wide.enter(1)
    assert mbt.tokenizers["audio"].proj.weight.shape[-2:] == (16, 16)


def test_datar_beside_the_visual_stream_through_late_fusion():
    from speechbrain_datar.lobes.models.datar import DATAR
    from speechbrain_datar.lobes.models.mbt import LateFusion
    from speechbrain_datar.nnet.classifier import ModalityClassifier

    torch.manual_seed(0)
    fused = LateFusion("datar", {"preset": "micro", "n_mels": 32}, dict(SIZES, preset="micro")).eval()
    assert isinstance(fused.audio_encoder, DATAR)
    head = ModalityClassifier(fused.embedding_dim, 4)
    feats, frames = inputs()
    with torch.no_grad():
        a = fused(feats, None, frames=frames)
        b = fused(torch.randn_like(feats), None, frames=frames)
    assert a.shape == (2, 2, 32) and torch.equal(a[:, 1], b[:, 1]) and not torch.allclose(a[:, 0], b[:, 0])
    assert fused(feats).shape == (2, 1, 32)  # a file without picture: audio alone
    log_probs = head.train()(fused(feats, None, frames=frames))["label"]
    log_probs.sum().backward()
    assert log_probs.shape == (2, 2, 4)
    assert all(p.grad is not None for p in fused.audio_encoder.parameters() if p.requires_grad)


# --------------------------------------------------------------- scenic's encoder, restated
def scenic_block(block, x):
    """scenic's EncoderBlock: pre-norm multi-head self-attention and MLP, each residual (eval mode)."""
    heads = block.attn.num_heads
    h = F.layer_norm(x, x.shape[-1:], block.norm1.weight, block.norm1.bias, eps=1e-6)
    q, k, v = (h @ block.attn.qkv.weight.t() + block.attn.qkv.bias).chunk(3, dim=-1)
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
    weights = (split(q) @ split(k).transpose(-1, -2) / math.sqrt(q.shape[-1] // heads)).softmax(-1)
    attended = (weights @ split(v)).transpose(1, 2).reshape(x.shape)
    x = x + attended @ block.attn.proj.weight.t() + block.attn.proj.bias
    h = F.layer_norm(x, x.shape[-1:], block.norm2.weight, block.norm2.bias, eps=1e-6)
    h = F.gelu(h @ block.mlp.fc1.weight.t() + block.mlp.fc1.bias) @ block.mlp.fc2.weight.t() + block.mlp.fc2.bias
    return x + h


def scenic_encoder(mbt, feats, frames):
    """scenic/projects/mbt/model.py's MBT up to its encoder_norm, with ``mbt``'s weights (token classifier)."""
    x = {}
    for name, data in (("spectrogram", feats), ("rgb", frames)):
        if name == "spectrogram":
            tokens = (
                F.conv2d(
                    feats.transpose(1, 2).unsqueeze(1),
                    mbt.tokenizers["audio"].proj.weight,
                    mbt.tokenizers["audio"].proj.bias,
                    stride=16,
                )
                .flatten(2)
                .transpose(1, 2)
            )
            cls, pos = mbt.cls["audio"], mbt.pos_embed["audio"]
        else:
            tokens = (
                F.conv3d(
                    frames.transpose(1, 2),
                    mbt.tokenizers["video"].proj.weight,
                    mbt.tokenizers["video"].proj.bias,
                    stride=(1, 16, 16),
                )
                .flatten(2)
                .transpose(1, 2)
            )
            cls, pos = mbt.cls["video"], mbt.pos_embed["video"]
        x[name] = torch.cat((cls.expand(len(data), -1, -1), tokens), dim=1) + pos
    blocks = {"spectrogram": mbt.blocks["audio"], "rgb": mbt.blocks["video"]}
    bottleneck = mbt.bottleneck.expand(len(feats), -1, -1)
    for layer in range(mbt.depth):
        if layer < mbt.fusion_layer:
            x = {m: scenic_block(blocks[m][layer], x[m]) for m in x}
        elif mbt.fusion == "bottleneck":
            bottle = []
            for m in ("rgb", "spectrogram"):
                t = x[m].shape[1]
                out = scenic_block(blocks[m][layer], torch.cat([x[m], bottleneck], dim=1))
                x[m] = out[:, :t]
                bottle.append(out[:, t:])
            bottleneck = torch.stack(bottle, dim=-1).mean(dim=-1)
        else:
            new = {}
            for m in ("rgb", "spectrogram"):
                other = [x[o] for o in ("rgb", "spectrogram") if o != m]
                t = x[m].shape[1]
                new[m] = scenic_block(blocks[m][layer], torch.cat(other + [x[m]], dim=1))[:, -t:]
            x = new
    encoded = torch.cat([x["rgb"], x["spectrogram"]], dim=1)
    return F.layer_norm(encoded, encoded.shape[-1:], mbt.norm.weight, mbt.norm.bias, eps=1e-6), x["rgb"].shape[1]


@pytest.mark.parametrize("fusion,fusion_layer", [("bottleneck", 2), ("bottleneck", 0), ("cross_attention", 1)])
def test_equals_a_restatement_of_scenics_encoder(fusion, fusion_layer):
    mbt = model(fusion=fusion, fusion_layer=fusion_layer)
    for p in mbt.parameters():  # weights far from their initial values
        torch.nn.init.normal_(p, std=0.2)
    feats, frames = inputs(seed=1)
    with torch.no_grad():
        ours = mbt.forward_features(feats, frames)
        theirs, n_rgb = scenic_encoder(mbt, feats, frames)
    assert torch.allclose(ours["video"], theirs[:, :n_rgb], atol=1e-5)
    assert torch.allclose(ours["audio"], theirs[:, n_rgb:], atol=1e-5)
    assert torch.equal(ours["cls"][:, 0], ours["audio"][:, 0]) and torch.equal(ours["cls"][:, 1], ours["video"][:, 0])


def test_evaluation_averages_the_logits_of_crops_spread_over_the_clip():
    from speechbrain.lobes.features import Fbank

    from speechbrain_datar.inference.temporal_crops import crop_starts, embed_crops
    from speechbrain_datar.nnet.classifier import ModalityClassifier

    torch.manual_seed(0)
    mbt = MBT("micro", n_mels=32, audio_frames=101, n_frames=2, image_size=32).eval()
    head = ModalityClassifier(32, 5).eval()
    fbank = Fbank(n_mels=32)
    wav, frames = torch.randn(1, 40000), torch.randn(1, 4, 2, 3, 32, 32)  # 2.5 s; each crop its own frames
    starts = crop_starts(2.5, 1.0, 4)
    assert starts == [0.0, 0.5, 1.0, 1.5]
    with torch.no_grad():
        rows = embed_crops(
            mbt, lambda w, _lengths: fbank(w), wav, torch.ones(1), frames, torch.tensor([starts]), 16000, 1.0
        )
        logits = [
            head.out(mbt(fbank(wav[:, int(s * 16000) : int(s * 16000) + 16000]), frames=frames[:, i]))
            for i, s in enumerate(starts)
        ]  # each [1, 2 modalities, 5]
    expected = torch.log_softmax(torch.cat(logits, dim=1).mean(dim=1, keepdim=True), dim=-1)
    assert rows.shape == (1, 8, 32) and torch.allclose(head(rows)["label"], expected, atol=1e-5)
