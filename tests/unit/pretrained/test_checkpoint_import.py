"""Importing DAT, ViT/DeiT and AST checkpoints (each model's ``load_pretrained``, ``init_from`` for any model):
the same functions, clear errors on the wrong layout."""

import pytest
import torch
import torch.nn.functional as F
from dat_v1_reference import dat_v1_features, make_dat_state_dict
from hyperpyyaml import load_hyperpyyaml

from speechbrain_datar.lobes.models.ast import AST
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.nnet.classifier import Classifier
from speechbrain_datar.pretrained.checkpoint_import import CheckpointLayoutError


@pytest.fixture(scope="module")
def dat_state():
    return make_dat_state_dict()


def datar_for_imagenet(convention="dat_v1"):
    return DATAR("tiny", n_mels=224, reference_frames=224, input_adaptor="none", grid_convention=convention).eval()


def test_imported_datar_tiny_reproduces_dat_t(dat_state):
    model = datar_for_imagenet()
    report = model.load_pretrained({"model": dat_state})
    assert report.initialised == [] and "patch_proj.weight" in report.resized
    assert set(report.ignored) >= {"cls_head.weight", "cls_head.bias"}
    image = torch.randn(2, 224, 224)
    with torch.no_grad():
        expected = dat_v1_features(dat_state, image.unsqueeze(1).expand(-1, 3, -1, -1))
        ours = model(image.transpose(1, 2))[:, 0]
    assert torch.allclose(ours, expected, atol=1e-4, rtol=1e-4)
    # the default token grid convention is a different (batch-independent) sampling: it drifts
    token = datar_for_imagenet("token")
    token.load_pretrained(dat_state)
    with torch.no_grad():
        drift = (token(image.transpose(1, 2))[:, 0] - expected).norm() / expected.norm()
    assert 1e-3 < drift.item() < 0.5


def test_spectrogram_shaped_datar_gets_resized_tables(dat_state):
    model = DATAR("tiny")  # 128 mel x 1024 frames: 8 x 64 and 4 x 32 maps in the deformable stages
    report = model.load_pretrained(dat_state)
    assert "stages.2.1.attn.rpe_table" in report.resized
    assert report.initialised == ["input_adaptor.conv.bias", "input_adaptor.conv.weight"]
    table = model.stages[2][1].attn.rpe_table
    source = dat_state["stages.2.attns.1.rpe_table"]  # 27 x 27, centre at (13, 13)
    assert table.shape == (12, 15, 127)
    # token convention: the same token displacements keep their bias, larger ones take the border value
    assert torch.equal(table[:, 7, 63], source[:, 13, 13])
    assert torch.equal(table[:, 7 - 3, 63 + 5], source[:, 13 - 3, 13 + 5])
    assert torch.equal(table[:, 7, 126], source[:, 13, 26])
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 300, 128))).all()


def test_dat_layout_problems_are_named(dat_state):
    broken = dict(dat_state)
    del broken["stages.2.attns.1.proj_k.weight"]
    with pytest.raises(CheckpointLayoutError, match="missing from the checkpoint: stages.2.1.attn.proj_k.weight"):
        datar_for_imagenet().load_pretrained(broken)
    extra = dict(dat_state, **{"stages.9.attns.0.proj_qkv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointLayoutError, match="not expected in the checkpoint: stages.9.attns.0.proj_qkv.weight"):
        datar_for_imagenet().load_pretrained(extra)
    with pytest.raises(
        CheckpointLayoutError,
        match=r"wrong shapes: .*down_projs\.0\.0\.weight \(192, 96, 2, 2\) -> stages\.1\.downsample\.weight \(256, 128, 2, 2\)",
    ):
        DATAR("base", n_mels=224, reference_frames=224).load_pretrained(dat_state)
    with pytest.raises(CheckpointLayoutError, match="missing from the checkpoint: stages.2.10.attn"):
        DATAR("small", n_mels=224, reference_frames=224).load_pretrained(dat_state)  # DAT-S has 18 blocks in stage 3
    with pytest.raises(CheckpointLayoutError, match="deformable in one model"):
        DATAR("tiny", deformable=False).load_pretrained(dat_state)
    with pytest.raises(CheckpointLayoutError, match="not a DAT checkpoint"):
        datar_for_imagenet().load_pretrained(make_ast_state_dict())


# ------------------------------------------------------------------------ AST
def make_ast_state_dict(f_dim=12, t_dim=101, dim=64, depth=2, classes=527, seed=0):
    """Random weights in the official AST layout (``audioset_10_10_0.4593.pth``: DataParallel ``module.`` keys)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s, std=0.05: torch.randn(*s, generator=g) * std  # noqa: E731
    sd = {
        "module.v.cls_token": rand(1, 1, dim),
        "module.v.dist_token": rand(1, 1, dim),
        "module.v.pos_embed": rand(1, f_dim * t_dim + 2, dim),
        "module.v.patch_embed.proj.weight": rand(dim, 1, 16, 16),
        "module.v.patch_embed.proj.bias": rand(dim),
        "module.v.norm.weight": 1 + rand(dim),
        "module.v.norm.bias": rand(dim),
        "module.v.head.weight": rand(1000, dim),
        "module.v.head.bias": rand(1000),
        "module.v.head_dist.weight": rand(1000, dim),
        "module.v.head_dist.bias": rand(1000),
        "module.mlp_head.0.weight": 1 + rand(dim),
        "module.mlp_head.0.bias": rand(dim),
        "module.mlp_head.1.weight": rand(classes, dim),
        "module.mlp_head.1.bias": rand(classes),
    }
    for i in range(depth):
        b = f"module.v.blocks.{i}"
        sd.update(
            {
                f"{b}.norm1.weight": 1 + rand(dim),
                f"{b}.norm1.bias": rand(dim),
                f"{b}.attn.qkv.weight": rand(3 * dim, dim, std=0.2),
                f"{b}.attn.qkv.bias": rand(3 * dim),
                f"{b}.attn.proj.weight": rand(dim, dim),
                f"{b}.attn.proj.bias": rand(dim),
                f"{b}.norm2.weight": 1 + rand(dim),
                f"{b}.norm2.bias": rand(dim),
                f"{b}.mlp.fc1.weight": rand(4 * dim, dim),
                f"{b}.mlp.fc1.bias": rand(4 * dim),
                f"{b}.mlp.fc2.weight": rand(dim, 4 * dim),
                f"{b}.mlp.fc2.bias": rand(dim),
            }
        )
    return sd


def ast_reference_logits(sd, fbank, heads=2):
    """The original AST forward (timm ViT blocks, LN eps 1e-6, CLS/distillation average, mlp_head)."""
    p = lambda k: sd[f"module.{k}"]  # noqa: E731
    x = F.conv2d(
        fbank.transpose(1, 2).unsqueeze(1), p("v.patch_embed.proj.weight"), p("v.patch_embed.proj.bias"), stride=10
    )
    x = x.flatten(2).transpose(1, 2)
    batch, dim = x.shape[0], x.shape[-1]
    x = torch.cat((p("v.cls_token").expand(batch, -1, -1), p("v.dist_token").expand(batch, -1, -1), x), 1) + p(
        "v.pos_embed"
    )
    i = 0
    while f"module.v.blocks.{i}.norm1.weight" in sd:
        b = f"v.blocks.{i}"
        h = F.layer_norm(x, (dim,), p(f"{b}.norm1.weight"), p(f"{b}.norm1.bias"), eps=1e-6)
        q, k, v = (h @ p(f"{b}.attn.qkv.weight").t() + p(f"{b}.attn.qkv.bias")).chunk(3, -1)
        split = lambda t: t.reshape(batch, -1, heads, dim // heads).transpose(1, 2)  # noqa: E731
        a = (split(q) @ split(k).transpose(-1, -2) * (dim // heads) ** -0.5).softmax(-1) @ split(v)
        x = x + a.transpose(1, 2).reshape(batch, -1, dim) @ p(f"{b}.attn.proj.weight").t() + p(f"{b}.attn.proj.bias")
        h = F.layer_norm(x, (dim,), p(f"{b}.norm2.weight"), p(f"{b}.norm2.bias"), eps=1e-6)
        h = F.gelu(h @ p(f"{b}.mlp.fc1.weight").t() + p(f"{b}.mlp.fc1.bias"))
        x = x + h @ p(f"{b}.mlp.fc2.weight").t() + p(f"{b}.mlp.fc2.bias")
        i += 1
    x = F.layer_norm(x, (dim,), p("v.norm.weight"), p("v.norm.bias"), eps=1e-6)
    pooled = (x[:, 0] + x[:, 1]) / 2
    pooled = F.layer_norm(pooled, (dim,), p("mlp_head.0.weight"), p("mlp_head.0.bias"))
    return pooled @ p("mlp_head.1.weight").t() + p("mlp_head.1.bias")


def test_imported_official_ast_reproduces_its_outputs():
    sd = make_ast_state_dict()
    model = AST("micro", embed_dim=64, depth=2, num_heads=2).eval()
    head = Classifier(64, 527, input_norm=True).eval()
    report = model.load_pretrained(sd, head=head)
    assert report.initialised == [] and "head.out.weight" in report.loaded
    fbank = torch.randn(2, 1024, 128)
    with torch.no_grad():
        expected = ast_reference_logits(sd, fbank)
        ours = head.out(head.norm(model(fbank)))[:, 0]
    assert torch.allclose(ours, expected, atol=1e-4, rtol=1e-4)


def test_imagenet_vit_is_adapted_to_the_spectrogram_grid():
    g = torch.Generator().manual_seed(0)
    dim = 64
    vit = {
        "cls_token": torch.randn(1, 1, dim, generator=g),
        "pos_embed": torch.randn(1, 1 + 14 * 14, dim, generator=g),
        "patch_embed.proj.weight": torch.randn(dim, 3, 16, 16, generator=g),
        "patch_embed.proj.bias": torch.zeros(dim),
        "norm.weight": torch.ones(dim),
        "norm.bias": torch.zeros(dim),
        "head.weight": torch.zeros(1000, dim),
        "head.bias": torch.zeros(1000),
    }
    block = AST("micro", embed_dim=64, depth=1, num_heads=2).state_dict()
    vit.update({k: torch.randn(v.shape, generator=g) for k, v in block.items() if k.startswith("blocks.")})
    model = AST("micro", embed_dim=64, depth=1, num_heads=2)
    report = model.load_pretrained(vit)
    assert {"patch_embed.weight", "pos_embed", "dist_token"} <= set(report.resized)
    assert torch.allclose(model.patch_embed.weight, vit["patch_embed.proj.weight"].sum(1, keepdim=True))
    grid = model.pos_embed[0, 2:].reshape(12, 101, dim)
    source = vit["pos_embed"][0, 1:].reshape(14, 14, dim)
    assert grid.shape == (12, 101, dim) and torch.equal(model.pos_embed[0, 0], vit["pos_embed"][0, 0])
    # frequency: a centre crop of 12 rows out of 14; time: interpolated from 14 to 101 columns
    resized = F.interpolate(source.permute(2, 0, 1)[None], size=(14, 101), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(grid.permute(2, 0, 1), resized[:, 1:13])


def test_ast_layout_problems_are_named():
    sd = make_ast_state_dict()
    with pytest.raises(
        CheckpointLayoutError,
        match=r"wrong shapes: .*v\.blocks\.0\.attn\.qkv\.weight \(192, 64\) -> blocks\.0\.attn\.qkv\.weight \(96, 32\)",
    ):
        AST("micro", embed_dim=32, depth=2, num_heads=2).load_pretrained(sd)
    with pytest.raises(CheckpointLayoutError, match="12 x 50"):
        AST("micro", embed_dim=64, depth=2, num_heads=2, target_length=512).load_pretrained(sd)
    with pytest.raises(CheckpointLayoutError, match="not expected in the checkpoint: v.blocks.1"):
        AST("micro", embed_dim=64, depth=1, num_heads=2).load_pretrained(sd)
    with pytest.raises(CheckpointLayoutError, match="neither a ViT nor an AST"):
        AST("micro").load_pretrained(make_dat_state_dict())


def test_init_from_works_in_hyperpyyaml(dat_state, tmp_path):
    path = str(tmp_path / "dat_tiny_in1k.pth")
    torch.save({"model": dat_state}, path)
    hparams = load_hyperpyyaml(
        f"""
embedding_model: !new:speechbrain_datar.lobes.models.datar.DATAR
    preset: tiny
init_report: !apply:speechbrain_datar.pretrained.checkpoint_import.init_from
    model: !ref <embedding_model>
    checkpoint: {path}
    report_path: {tmp_path / "init_report.json"}
"""
    )
    assert hparams["init_report"].initialised == ["input_adaptor.conv.bias", "input_adaptor.conv.weight"]
    assert torch.equal(
        hparams["embedding_model"].stages[0][0].mlp.fc1.weight, dat_state["stages.0.mlps.0.chunk.linear1.weight"]
    )
    assert (tmp_path / "init_report.json").exists()


# ------------------------------------------------------------------------ MBT
def make_vit_state_dict(dim=32, depth=4, grid=14, seed=1):
    """Random weights in timm's ViT layout (an ImageNet-21k ViT-B/16 has dim 768, depth 12, a 14 x 14 grid)."""
    from speechbrain_datar.lobes.models.ast import ViTBlock

    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    sd = {
        "cls_token": rand(1, 1, dim),
        "pos_embed": rand(1, 1 + grid * grid, dim),
        "patch_embed.proj.weight": rand(dim, 3, 16, 16),
        "patch_embed.proj.bias": rand(dim),
        "norm.weight": 1 + rand(dim),
        "norm.bias": rand(dim),
        "head.weight": rand(21843, dim),
        "head.bias": rand(21843),
    }
    for i in range(depth):
        sd.update({f"blocks.{i}.{k}": rand(*v.shape) for k, v in ViTBlock(dim, 2).state_dict().items()})
    return sd


def micro_mbt(**kwargs):
    from speechbrain_datar.lobes.models.mbt import MBT

    return MBT("micro", **dict(dict(n_mels=32, audio_frames=64, n_frames=2, image_size=32), **kwargs)).eval()


def test_imagenet_vit_fills_both_mbt_streams():

    vit = make_vit_state_dict()
    mbt = micro_mbt(tubelet=2)
    report = mbt.load_pretrained(vit)
    assert report.initialised == ["bottleneck"] and set(report.ignored) == {"head.weight", "head.bias"}
    rgb = vit["patch_embed.proj.weight"]
    assert torch.equal(mbt.tokenizers["audio"].proj.weight, rgb.sum(1, keepdim=True))
    video = mbt.tokenizers["video"].proj.weight  # 16 x 16 x 2 tubelets: the kernel on the central frame
    assert torch.equal(video[:, :, 1], rgb) and not video[:, :, 0].any()
    for m in ("audio", "video"):
        assert torch.equal(mbt.blocks[m][3].mlp.fc2.weight, vit["blocks.3.mlp.fc2.weight"])
        assert torch.equal(mbt.cls[m], vit["cls_token"]) and torch.equal(mbt.pos_embed[m][:, 0], vit["pos_embed"][:, 0])
    assert torch.equal(mbt.norm.weight, vit["norm.weight"])
    # frames: the 14 x 14 grid resized to 2 x 2, the same for every tubelet; audio: AST's centre crop, 2 x 4
    grid = vit["pos_embed"][0, 1:].reshape(14, 14, 32).permute(2, 0, 1)[None]
    frame = F.interpolate(grid, size=(2, 2), mode="bilinear", align_corners=False)[0].flatten(1).t()
    assert torch.allclose(mbt.pos_embed["video"][0, 1:], frame)
    audio = grid[0, :, 6:8, 5:9].flatten(1).t()
    assert torch.allclose(mbt.pos_embed["audio"][0, 1:], audio)
    # central-frame initialisation: a still video's tubelet tokens are the image's ViT patch tokens
    image = torch.randn(1, 3, 32, 32)
    still = image[:, None].expand(-1, 2, -1, -1, -1)
    expected = F.conv2d(image, rgb, vit["patch_embed.proj.bias"], stride=16).flatten(2).transpose(1, 2)
    assert torch.allclose(mbt.tokenizers["video"](still), expected, atol=1e-5)


def test_ast_fills_the_audio_stream_and_a_vit_the_visual_one(tmp_path):
    from speechbrain_datar.lobes.models.mbt import LateFusion
    from speechbrain_datar.pretrained.checkpoint_import import init_from

    ast, vit = make_ast_state_dict(dim=32, depth=4), make_vit_state_dict()
    torch.save(ast, tmp_path / "ast.pth")
    torch.save(vit, tmp_path / "vit.pth")
    mbt = micro_mbt()
    report = init_from(
        mbt,
        {"audio": str(tmp_path / "ast.pth"), "video": str(tmp_path / "vit.pth")},
        report_path=str(tmp_path / "report.json"),
    )
    assert report.initialised == ["bottleneck"] and "v.dist_token" in report.ignored
    assert torch.equal(mbt.blocks["audio"][0].attn.qkv.weight, ast["module.v.blocks.0.attn.qkv.weight"])
    assert torch.equal(mbt.blocks["video"][0].attn.qkv.weight, vit["blocks.0.attn.qkv.weight"])
    assert torch.equal(mbt.tokenizers["audio"].proj.weight, ast["module.v.patch_embed.proj.weight"])
    # AST's 12 x 101 overlapping grid, resized to the 2 x 4 grid of 16 x 16 patches
    grid = ast["module.v.pos_embed"][0, 2:].t().reshape(32, 12, 101)[None]
    expected = F.interpolate(grid, size=(2, 4), mode="bilinear", align_corners=False)[0].flatten(1).t()
    assert torch.allclose(mbt.pos_embed["audio"][0, 1:], expected)
    assert (tmp_path / "report.json").exists()
    # problems are named, and nothing is half-loaded by an import that fails
    before = {k: v.clone() for k, v in micro_mbt().state_dict().items()}
    fresh = micro_mbt()
    fresh.load_state_dict(before)
    with pytest.raises(CheckpointLayoutError, match="can fill the audio stream only"):
        fresh.load_pretrained(ast, streams=("audio", "video"))
    with pytest.raises(CheckpointLayoutError, match="not expected in the checkpoint: blocks.4"):
        fresh.load_pretrained(make_vit_state_dict(depth=5))
    with pytest.raises(CheckpointLayoutError, match=r"wrong shapes: .*blocks\.0\.attn\.qkv\.weight \(192, 64\)"):
        fresh.load_pretrained(make_vit_state_dict(dim=64))
    with pytest.raises(CheckpointLayoutError, match="neither a ViT nor an AST"):
        fresh.load_pretrained(make_dat_state_dict())
    assert all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())
    # DATAR users get sight too: a DAT checkpoint for the audio encoder, a ViT for the visual stream
    fused = LateFusion("datar", {"preset": "tiny", "n_mels": 32}, {"preset": "micro", "n_frames": 2, "image_size": 32})
    with pytest.raises(CheckpointLayoutError, match="one checkpoint per stream"):
        init_from(fused, str(tmp_path / "vit.pth"))
    torch.save({"model": make_dat_state_dict()}, tmp_path / "dat.pth")
    report = init_from(fused, {"audio": str(tmp_path / "dat.pth"), "video": str(tmp_path / "vit.pth")})
    assert "audio_encoder.stages.2.1.attn.proj_q.weight" in report.loaded
    assert torch.equal(fused.video_encoder.blocks["video"][1].norm1.bias, vit["blocks.1.norm1.bias"])


def test_the_importers_of_version_0_2_still_work_and_say_where_they_went(dat_state):
    from speechbrain_datar.pretrained.checkpoint_import import import_dat

    model = datar_for_imagenet()
    with pytest.warns(DeprecationWarning, match="model.load_pretrained"):
        report = import_dat(model, dat_state)
    assert report.to_dict() == datar_for_imagenet().load_pretrained(dat_state).to_dict()
