"""MBT: audio-visual fusion through attention bottlenecks (Nagrani et al., NeurIPS 2021).

One ViT stream per modality, each with its own weights, patch embedding,
positional embedding and CLS token: the spectrogram cut into 16x16 patches, the
frames into 16x16 patches per frame (or 16x16x2 tubelets). Layers below the
fusion layer ``L_f`` run on each modality alone. From ``L_f`` on:

- ``fusion="bottleneck"`` (MBT): modality ``m``'s layer runs on
  ``[its tokens ; B bottleneck tokens]``, and the next bottleneck is the mean over
  the modalities of their bottleneck outputs. Bottlenecks start as a learned
  ``N(0, 0.02)`` parameter.
- ``fusion="cross_attention"`` (the paper's "vanilla" fusion): modality ``m``'s
  layer runs on ``[the other modalities' tokens ; its tokens]`` and keeps its own.

``L_f = depth`` is late fusion (the streams never meet), ``L_f = 0`` early fusion.
A final LayerNorm is shared by the modalities. This follows scenic's
``projects/mbt/model.py`` (which also adds one bottleneck token when CLS tokens are
used, as here).
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.errors import DataError
from speechbrain_datar.lobes.checkpoint_mapping import (
    CheckpointLayoutError,
    ImportReport,
    adapt_position_embedding,
    square_grid,
    start_import,
    vit_patch_kernel,
)
from speechbrain_datar.lobes.encoder import AudioEncoder
from speechbrain_datar.lobes.models.ast import AST
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.nnet.layers import init_linear_weights, preset_config, record_init_kwargs
from speechbrain_datar.nnet.masking import spectrogram_token_mask, valid_frames, zero_padded_frames
from speechbrain_datar.nnet.patch_embedding import interpolate_time_positions, positions_for_time, resize_patch_kernel
from speechbrain_datar.nnet.vit import ViTBlock

__all__ = ["FUSIONS", "LateFusion", "MBT", "MODALITIES", "PRESETS", "audio_visual_encoder"]

logger = logging.getLogger(__name__)

PRESETS = {
    "base": dict(embed_dim=768, depth=12, num_heads=12, fusion_layer=8),
    "micro": dict(embed_dim=32, depth=4, num_heads=2, fusion_layer=2),
}
MODALITIES = ("audio", "video")
FUSIONS = ("bottleneck", "cross_attention")


class SpectrogramTokens(nn.Module):
    """Non-overlapping ``patch x patch`` patches of ``[batch, time, n_mels]`` features -> tokens ``[batch, n, dim]``
    in (frequency, time) order. ``set_time_resolution`` of ``MBT`` may widen the patches along time."""

    def __init__(self, dim, patch=16):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, patch)

    def forward(self, feats):
        """Tokens in (frequency, time) order of the patch grid; a clip shorter than a patch is padded to one."""
        width = self.proj.kernel_size[1]
        if feats.shape[1] < width:
            feats = F.pad(feats, (0, 0, 0, width - feats.shape[1]))
        return self.proj(feats.transpose(1, 2).unsqueeze(1)).flatten(2).transpose(1, 2)


class FrameTokens(nn.Module):
    """Frames ``[batch, n_frames, 3, H, W]`` (float) -> tokens ``[batch, n, dim]``: 2-D patches of each frame, or
    ``tubelet``-frame 3-D tubelets (MBT's 16x16x2)."""

    def __init__(self, dim, patch=16, tubelet=1):
        super().__init__()
        self.tubelet = int(tubelet)
        self.proj = nn.Conv3d(3, dim, (self.tubelet, patch, patch), (self.tubelet, patch, patch))

    def forward(self, frames):
        """Tokens in (time, height, width) order."""
        return self.proj(frames.transpose(1, 2)).flatten(2).transpose(1, 2)


class MBT(AudioEncoder):
    """Audio-visual transformer with bottleneck (or cross-attention) fusion.

    The audio stream takes spectrograms of any length: its positional embedding
    is sized for ``audio_frames`` and a longer input gets an interpolated copy (a
    shorter one its first columns, as padding would). Patches beyond a clip's
    valid length are masked out of attention, so a clip's output does not depend
    on its batch as long as the batch is no longer than ``audio_frames``: a batch
    padded beyond it interpolates the positions of all its clips to its own length
    (as AST does beyond its training length). The visual stream takes up to
    ``n_frames`` frames.

    Arguments
    ---------
    preset : str
        ``"base"`` (ViT-B, ``L_f = 8``) or ``"micro"`` (for tests).
    modalities : sequence
        ``("audio", "video")``, or one of them for a single-modality model.
    n_mels, audio_frames : int
        Spectrogram height and the length (frames) its positional embedding is sized for (8 s: 801).
    n_frames, image_size : int
        Frames per clip and their size (8 frames of 224 x 224).
    patch, tubelet : int
        Patch size; frames per tubelet (1: 2-D patches per frame).
    fusion_layer : int
        ``L_f``; ``depth`` means late fusion.
    n_bottlenecks : int
        ``B``, bottleneck tokens.
    fusion : str
        ``"bottleneck"`` or ``"cross_attention"``.
    share_encoder : bool
        One set of transformer layers for every modality (scenic's ``share_encoder``, the paper's
        shared-weights ablation); the patch embeddings, positions and CLS tokens stay per modality.
    embed_dim, depth, num_heads : int
        Override the preset.
    mlp_ratio, drop_rate, attn_drop_rate, drop_path_rate : float
        As in ViT; stochastic depth grows linearly to ``drop_path_rate``.
    pooling : str
        ``"cls"``: each modality's CLS (the paper); ``"mean"``: the mean of all valid tokens (released config).

    Example
    -------
    >>> model = MBT("micro", n_mels=32, audio_frames=64, n_frames=2, image_size=32).eval()
    >>> out = model.forward_features(torch.randn(2, 64, 32), torch.randn(2, 2, 3, 32, 32))
    >>> out["audio"].shape, out["video"].shape, out["cls"].shape
    (torch.Size([2, 9, 32]), torch.Size([2, 9, 32]), torch.Size([2, 2, 32]))
    >>> model(torch.randn(2, 100, 32), torch.tensor([1.0, 0.5])).shape  # audio alone, longer than 64 frames
    torch.Size([2, 1, 32])
    """

    def __init__(
        self,
        preset="base",
        modalities=MODALITIES,
        n_mels=128,
        audio_frames=800,
        n_frames=8,
        image_size=224,
        patch=16,
        tubelet=1,
        fusion_layer=None,
        n_bottlenecks=4,
        fusion="bottleneck",
        embed_dim=None,
        depth=None,
        num_heads=None,
        mlp_ratio=4.0,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        pooling="cls",
        share_encoder=False,
    ):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        config = preset_config(
            PRESETS, preset, embed_dim=embed_dim, depth=depth, num_heads=num_heads, fusion_layer=fusion_layer
        )
        self.modalities = tuple(modalities)
        if not self.modalities or any(m not in MODALITIES for m in self.modalities):
            raise DataError(f"modalities must be taken from {MODALITIES}, got {modalities}")
        if fusion not in FUSIONS:
            raise DataError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if pooling not in ("cls", "mean"):
            raise DataError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if n_mels < patch:
            raise ValueError(f"n_mels {n_mels} is smaller than the patch size {patch}")
        self.pooling = pooling
        dim, self.depth = config["embed_dim"], config["depth"]
        self.fusion_layer, self.fusion = config["fusion_layer"], fusion
        if not 0 <= self.fusion_layer <= self.depth:
            raise ValueError(f"fusion_layer must be in [0, {self.depth}], got {self.fusion_layer}")
        self.embedding_dim, self.n_mels, self.patch = dim, n_mels, patch
        self.f_dim = n_mels // patch
        self.audio_frames = self.base_audio_frames = audio_frames  # set_time_resolution(1) restores the latter
        self.video_grid = (n_frames // tubelet, image_size // patch)  # tubelets along time, patches per side
        grids = {
            "audio": self.f_dim * max(1, audio_frames // patch),
            "video": self.video_grid[0] * self.video_grid[1] ** 2,
        }
        self.tokenizers = nn.ModuleDict()
        if "audio" in self.modalities:
            self.tokenizers["audio"] = SpectrogramTokens(dim, patch)
        if "video" in self.modalities:
            self.tokenizers["video"] = FrameTokens(dim, patch, tubelet)
        self.cls = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, dim)) for m in self.modalities})
        self.pos_embed = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(1, grids[m] + 1, dim) * 0.02) for m in self.modalities}
        )
        # scenic adds one bottleneck token for the CLS tokens' sake
        self.bottleneck = nn.Parameter(torch.randn(1, n_bottlenecks + 1, dim) * 0.02)
        rates = torch.linspace(0, drop_path_rate, self.depth).tolist()

        def layers():
            """A fresh stack of ViT blocks with their drop-path rates."""
            return nn.ModuleList(
                ViTBlock(dim, config["num_heads"], mlp_ratio, drop_rate, attn_drop_rate, r) for r in rates
            )

        shared = layers() if share_encoder else None
        self.blocks = nn.ModuleDict({m: shared if share_encoder else layers() for m in self.modalities})
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(init_linear_weights)

    # ------------------------------------------------------------------ tokens
    def audio_tokens(self, feats, lengths=None):
        """``[CLS ; spectrogram patches] + positions`` and the valid-token mask (``None``: all valid)."""
        frames = valid_frames(feats, lengths, self.n_mels, "MBT")
        x = self.tokenizers["audio"](zero_padded_frames(feats, frames))
        n_time = x.shape[1] // self.f_dim
        pos = self.pos_embed["audio"]
        pos = torch.cat((pos[:, :1], positions_for_time(pos[:, 1:], self.f_dim, n_time)), dim=1)
        x = torch.cat((self.cls["audio"].expand(x.shape[0], -1, -1), x), dim=1) + pos
        width = self.tokenizers["audio"].proj.kernel_size[1]
        return x, spectrogram_token_mask(frames, n_time, self.f_dim, n_special=1, width=width, stride=width)

    def video_tokens(self, frames):
        """``[CLS ; frame patches] + positions`` (every token valid)."""
        x = self.tokenizers["video"](frames)
        x = torch.cat((self.cls["video"].expand(x.shape[0], -1, -1), x), dim=1)
        if x.shape[1] > self.pos_embed["video"].shape[1]:
            raise ValueError(
                f"the frames give {x.shape[1] - 1} patches; this MBT is sized for "
                f"{self.pos_embed['video'].shape[1] - 1} (n_frames and image_size)"
            )
        return x + self.pos_embed["video"][:, : x.shape[1]], None

    def set_time_resolution(self, factor=1, patch_resize=None):
        """Adapts the audio stream to a coarser time resolution (coarse-to-fine training); the visual
        stream does not change.

        Arguments
        ---------
        factor : int
            1 restores the audio grid MBT was built for.
        patch_resize : str or None
            ``None``: the features come ``factor`` times coarser and the positional
            grid is interpolated to ``factor`` times fewer columns. ``"pi"`` or
            ``"bilinear"``: the features stay at full resolution and the patches
            become ``factor`` times wider (kernel moved by that method).
        """
        if "audio" not in self.modalities:
            return
        factor = int(factor)
        width = self.patch * (1 if patch_resize is None else factor)
        self.audio_frames = -(-self.base_audio_frames // factor) if patch_resize is None else self.base_audio_frames
        resize_patch_kernel(
            self.tokenizers["audio"].proj, (self.patch, width), (self.patch, width), patch_resize or "pi"
        )
        n_time = max(1, self.audio_frames // width)
        pos = self.pos_embed["audio"]
        if pos.shape[1] - 1 != self.f_dim * n_time:
            grid = interpolate_time_positions(pos[:, 1:].detach(), self.f_dim, n_time)
            self.pos_embed["audio"] = nn.Parameter(torch.cat((pos[:, :1].detach(), grid), dim=1))

    # ------------------------------------------------------------------ layers
    def forward_features(self, feats=None, frames=None, lengths=None):
        """Encodes the modalities given.

        Arguments
        ---------
        feats : torch.Tensor or None
            ``[batch, time, n_mels]`` normalised features.
        frames : torch.Tensor or None
            ``[batch, n_frames, 3, H, W]`` normalised float frames.
        lengths : torch.Tensor or None
            Relative lengths of ``feats``.

        Returns
        -------
        dict
            Each modality's normalised tokens, ``cls`` ``[batch, M, dim]`` and ``valid``
            (each modality's valid-token mask, or ``None``).
        """
        inputs = {"audio": (feats, lengths), "video": (frames,)}
        tokenize = {"audio": self.audio_tokens, "video": self.video_tokens}
        given = [m for m in self.modalities if inputs[m][0] is not None]
        if not given:
            raise ValueError("MBT needs the spectrogram, the frames, or both")
        encoded = {m: tokenize[m](*inputs[m]) for m in given}
        x = {m: tokens for m, (tokens, _) in encoded.items()}
        valid = {m: mask for m, (_, mask) in encoded.items()}
        bottleneck = self.bottleneck.expand(next(iter(x.values())).shape[0], -1, -1)
        for layer in range(self.depth):
            if layer < self.fusion_layer or len(x) == 1:
                x = {m: self.blocks[m][layer](tokens, valid[m]) for m, tokens in x.items()}
            elif self.fusion == "bottleneck":
                x, bottleneck = self._bottleneck_layer(layer, x, valid, bottleneck)
            else:
                x = self._cross_attention_layer(layer, x, valid)
        x = {m: self.norm(tokens) for m, tokens in x.items()}
        return dict(x, cls=torch.stack([tokens[:, 0] for tokens in x.values()], dim=1), valid=valid)

    @staticmethod
    def _joint_mask(parts):
        """The key mask of concatenated ``(tokens, mask)`` parts (``None`` when all are valid)."""
        if all(mask is None for _, mask in parts):
            return None
        return torch.cat(
            [torch.ones(t.shape[:2], dtype=torch.bool, device=t.device) if mask is None else mask for t, mask in parts],
            dim=1,
        )

    def _bottleneck_layer(self, layer, x, valid, bottleneck):
        out, shared = {}, []
        for m, tokens in x.items():
            n = tokens.shape[1]
            mask = self._joint_mask([(tokens, valid[m]), (bottleneck, None)])
            both = self.blocks[m][layer](torch.cat((tokens, bottleneck), dim=1), mask)
            out[m] = both[:, :n]
            shared.append(both[:, n:])
        return out, torch.stack(shared, dim=-1).mean(dim=-1)

    def _cross_attention_layer(self, layer, x, valid):
        out = {}
        for m, tokens in x.items():
            parts = [(x[other], valid[other]) for other in x if other != m] + [(tokens, valid[m])]
            joint = self.blocks[m][layer](torch.cat([t for t, _ in parts], dim=1), self._joint_mask(parts))
            out[m] = joint[:, -tokens.shape[1] :]
        return out

    def load_pretrained(self, checkpoint, streams=None, head=None, source_name="ViT/AST checkpoint"):
        """Loads an ImageNet ViT (timm naming, e.g. ImageNet-21k ViT-B/16) or an official AST checkpoint into
        streams of this MBT.

        A ViT fills any stream: the spectrogram patch kernel is the RGB kernel summed
        over its channels and the positional grid is cropped along frequency and
        interpolated along time (as the AST import does); the frame kernel is the RGB
        kernel (16x16x2 tubelets: on the central frame, zeros on the other) and the
        spatial grid, resized to the frame size, is repeated over time. An AST
        checkpoint fills the audio stream (its CLS token, its positional grid resized
        to MBT's non-overlapping patches; its distillation token and heads are left
        out). The bottleneck tokens stay at their initialisation; the shared final
        LayerNorm takes the checkpoint's. Everything is listed in the report, and a
        checkpoint whose layout does not fit raises ``CheckpointLayoutError``.

        Arguments
        ---------
        checkpoint : str or dict
            Path or state dict.
        streams : sequence or None
            The modalities to fill (default: all of the model's for a ViT, ``audio`` for an AST).
        head : None
            Unused (MBT's head is trained from scratch).
        source_name : str
            How the report and the error messages name the checkpoint.

        Returns
        -------
        ImportReport
        """
        state, family, mapper = start_import(
            self, checkpoint, ("ast", "vit"), source_name, "is neither a ViT nor an AST checkpoint"
        )
        streams = tuple(streams or (self.modalities if family == "vit" else ("audio",)))
        unknown = [m for m in streams if m not in self.modalities]
        if unknown:
            raise CheckpointLayoutError(f"{source_name}: this MBT has no {unknown} stream (it has {self.modalities})")
        if family == "ast" and streams != ("audio",):
            raise CheckpointLayoutError(
                f"{source_name} is an AST checkpoint: it can fill the audio stream only, "
                f"not {list(streams)} (give the video stream an ImageNet ViT)"
            )
        prefix = "v." if family == "ast" else ""
        pos = state[f"{prefix}pos_embed"]
        n_special = 2 if f"{prefix}dist_token" in state else 1
        patches = pos[:, n_special:]
        for m in streams:
            proj = self.tokenizers[m].proj
            frames = proj.weight.shape[2] if m == "video" else None
            mapper.take(
                f"tokenizers.{m}.proj.weight",
                f"{prefix}patch_embed.proj.weight",
                lambda w, c=proj.weight.shape[1], t=frames: vit_patch_kernel(w, c, t, (t or 1) // 2),
                resized=True,
            )
            mapper.take(f"tokenizers.{m}.proj.bias", f"{prefix}patch_embed.proj.bias")
            mapper.take(f"cls.{m}", f"{prefix}cls_token")
            mapper.take(
                f"pos_embed.{m}",
                f"{prefix}pos_embed",
                lambda p, m=m: torch.cat((p[:, :1], _stream_positions(self, m, patches, family, source_name)), dim=1),
                resized=True,
            )
            for key in self.blocks[m].state_dict():
                mapper.take(f"blocks.{m}.{key}", f"{prefix}blocks.{key}")
        for suffix in ("weight", "bias"):
            mapper.take(f"norm.{suffix}", f"{prefix}norm.{suffix}")
        others = tuple(
            f"{part}.{m}." for m in self.modalities if m not in streams for part in ("tokenizers", "blocks")
        ) + tuple(f"{part}.{m}" for m in self.modalities if m not in streams for part in ("cls", "pos_embed"))
        mapper.finish(
            self,
            allowed_at_init=("bottleneck",) + others,
            ignored_sources=("head", "fc_norm", "mlp_head", "pre_logits", "dist_token"),
        )
        logger.info(mapper.report.summary())
        return mapper.report

    def forward(self, feats=None, lengths=None, frames=None):
        """The CLS embedding of each modality given, ``[batch, M, dim]`` (the paper), or with
        ``pooling="mean"`` the mean of all valid tokens of all modalities, ``[batch, 1, dim]`` (the
        released config)."""
        out = self.forward_features(feats, frames, lengths)
        if self.pooling == "cls":
            return out["cls"]
        given = [m for m in self.modalities if m in out]
        weights = self._joint_mask([(out[m], out["valid"][m]) for m in given])
        tokens = torch.cat([out[m] for m in given], dim=1)
        if weights is None:
            return tokens.mean(dim=1, keepdim=True)
        weights = weights.to(tokens.dtype).unsqueeze(-1)
        return ((tokens * weights).sum(dim=1) / weights.sum(dim=1)).unsqueeze(1)


class LateFusion(AudioEncoder):
    """An audio encoder of this package (DATAR, AST) beside MBT's visual stream, fused late.

    Returns one embedding per modality given, ``[batch, M, dim]``, for a
    ``ModalityClassifier`` (per-modality losses, averaged logits). An audio
    embedding of another size is projected to the visual one's. Built from plain
    settings, so that hparams files and exported folders describe it as they do
    every other encoder.

    Arguments
    ---------
    audio_encoder : str
        ``"datar"`` or ``"ast"``.
    audio_options : dict or None
        The audio encoder's arguments (``preset``, ``n_mels``, ...).
    video_options : dict or None
        ``MBT``'s arguments for the visual stream (its ``modalities`` are ``("video",)``).

    Example
    -------
    >>> model = LateFusion("datar", {"preset": "micro", "n_mels": 32},
    ...                    {"preset": "micro", "n_frames": 2, "image_size": 32}).eval()
    >>> model(torch.randn(2, 64, 32), torch.ones(2), frames=torch.randn(2, 2, 3, 32, 32)).shape
    torch.Size([2, 2, 32])
    """

    def __init__(self, audio_encoder="datar", audio_options=None, video_options=None):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        encoders = {"datar": DATAR, "ast": AST}
        if audio_encoder not in encoders:
            raise DataError(f"audio_encoder must be one of {sorted(encoders)}, got {audio_encoder!r}")
        self.audio_encoder = encoders[audio_encoder](**(audio_options or {}))
        self.video_encoder = MBT(**dict(video_options or {}, modalities=("video",)))
        self.modalities = MODALITIES
        self.embedding_dim = self.video_encoder.embedding_dim
        audio_dim = self.audio_encoder.embedding_dim
        self.project = nn.Identity() if audio_dim == self.embedding_dim else nn.Linear(audio_dim, self.embedding_dim)

    def set_time_resolution(self, factor=1, patch_resize=None):
        """Coarse-to-fine training changes the audio encoder only."""
        self.audio_encoder.set_time_resolution(factor, patch_resize)

    def load_pretrained(self, checkpoint, streams=None, head=None, source_name="checkpoint"):
        """Loads one checkpoint into the named streams: ``audio`` (this audio encoder's family: DAT for DATAR,
        ViT/AST for AST), ``video`` (an ImageNet ViT into MBT's visual stream). ``init_from`` gives one
        checkpoint per stream: ``{audio: ..., video: ...}``."""
        if streams is None:
            raise CheckpointLayoutError(
                "a LateFusion model takes one checkpoint per stream: init_from: {audio: <DAT or AST "
                "checkpoint>, video: <ImageNet ViT>}"
            )
        report = ImportReport(source_name)
        for stream in streams:
            target, prefix = (
                (self.audio_encoder, "audio_encoder.") if stream == "audio" else (self.video_encoder, "video_encoder.")
            )
            part = target.load_pretrained(checkpoint, None if stream == "audio" else ("video",), head, source_name)
            report.loaded += [prefix + k for k in part.loaded]
            report.resized += [prefix + k for k in part.resized]
            report.ignored += part.ignored
        return report

    def forward(self, feats=None, lengths=None, frames=None):
        """Audio then video embedding, for the modalities given."""
        rows = []
        if feats is not None:
            rows.append(self.project(self.audio_encoder(feats, lengths)))
        if frames is not None:
            rows.append(self.video_encoder(None, frames=frames))
        if not rows:
            raise ValueError("LateFusion needs the spectrogram, the frames, or both")
        return torch.cat(rows, dim=1)


def audio_visual_encoder(audio_stream="mbt", audio_options=None, **mbt_options):
    """The audio-visual encoder of ``hparams/mbt.yaml``: ``MBT`` with its own audio stream, or with
    ``audio_stream: datar`` (or ``ast``) that encoder beside MBT's visual stream (``LateFusion``).

    ``mbt_options`` are ``MBT``'s arguments; the audio encoder gets ``n_mels`` (and AST
    its ``target_length``) from them, and ``audio_options`` on top.

    Example
    -------
    >>> sizes = dict(preset="micro", n_mels=32, audio_frames=64, n_frames=2, image_size=32)
    >>> type(audio_visual_encoder(**sizes)).__name__, type(audio_visual_encoder("datar", {"preset": "micro"}, **sizes)).__name__
    ('MBT', 'LateFusion')
    """
    if audio_stream == "mbt":
        return MBT(**mbt_options)
    audio = {"n_mels": mbt_options.get("n_mels", 128)}
    if audio_stream == "ast":
        audio["target_length"] = mbt_options.get("audio_frames", 800)
    return LateFusion(audio_stream, dict(audio, **(audio_options or {})), mbt_options)


def _stream_positions(model, modality, patches, family, source_name):
    """The checkpoint's patch positions ``[1, n, dim]`` on one MBT stream's grid."""
    dim = patches.shape[-1]
    if modality == "audio":
        t_dim = (model.pos_embed["audio"].shape[1] - 1) // model.f_dim
        if family == "ast":  # AST's overlapping grid: 12 frequency rows (128 bins, stride 10)
            if patches.shape[1] % 12:
                raise CheckpointLayoutError(
                    f"{source_name}: {patches.shape[1]} positions are not 12 rows of an AST grid"
                )
            grid = patches[0].t().reshape(dim, 12, -1)
            grid = F.interpolate(grid[None], size=(model.f_dim, t_dim), mode="bilinear", align_corners=False)[0]
        else:
            grid = adapt_position_embedding(square_grid(patches, source_name), model.f_dim, t_dim)
        return grid.reshape(dim, -1).t().unsqueeze(0)
    n_time, side = model.video_grid
    grid = square_grid(patches, source_name)
    if grid.shape[-1] != side:
        grid = F.interpolate(grid[None], size=(side, side), mode="bilinear", align_corners=False)[0]
    return grid.reshape(dim, -1).t().unsqueeze(0).repeat(1, n_time, 1)
