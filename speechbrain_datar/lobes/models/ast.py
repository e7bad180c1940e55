"""The Audio Spectrogram Transformer (AST, Gong et al. 2021), the baseline DATAR is compared with.

A ViT over (overlapping) 16x16 spectrogram patches with CLS and distillation
tokens whose outputs are averaged. The learned positional embedding lives on the
patch grid of the training length; shorter clips use its first columns (which is
what padding them to the training length would give), longer clips an
interpolated copy. Patches beyond a clip's valid length are masked out of
attention, so a clip's embedding does not depend on its batch (up to the
training length).
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_datar.deprecation import moved_names
from speechbrain_datar.lobes.checkpoint_mapping import (
    CheckpointLayoutError,
    adapt_position_embedding,
    square_grid,
    start_import,
)
from speechbrain_datar.lobes.encoder import AudioEncoder
from speechbrain_datar.nnet.layers import init_linear_weights, preset_config, record_init_kwargs
from speechbrain_datar.nnet.masking import patches_within, spectrogram_token_mask, valid_frames, zero_padded_frames
from speechbrain_datar.nnet.patch_embedding import interpolate_time_positions, positions_for_time, resize_patch_kernel
from speechbrain_datar.nnet.vit import ViTBlock

__all__ = ["AST", "PRESETS"]

logger = logging.getLogger(__name__)

#: ViT sizes. ``base`` is ViT-B/16 as in AST.
PRESETS = {
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "micro": dict(embed_dim=64, depth=2, num_heads=2),
}


class AST(AudioEncoder):
    """AST encoder: ``embedding_model(feats, lengths) -> [batch, 1, embed_dim]``.

    Arguments
    ---------
    preset : str
        ``"base"`` (ViT-B, the AST of the paper), ``"small"``, ``"tiny"`` or ``"micro"``.
    n_mels : int
        Mel bins of the input.
    target_length : int
        Training clip length in frames; the positional embedding is sized for it.
    patch_size : int
        Square patch size (16 in AST).
    fstride, tstride : int
        Patch strides along frequency and time (10 in AST: 6-frame overlap).
    embed_dim, depth, num_heads : int
        Override the preset.
    mlp_ratio : float
        MLP expansion.
    drop_rate, attn_drop_rate, drop_path_rate : float
        Dropout, attention dropout, stochastic depth (linear over blocks).

    Example
    -------
    >>> model = AST(preset="micro", target_length=100).eval()
    >>> model(torch.randn(2, 100, 128), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 1, 64])
    """

    def __init__(
        self,
        preset="base",
        n_mels=128,
        target_length=1024,
        patch_size=16,
        fstride=10,
        tstride=10,
        embed_dim=None,
        depth=None,
        num_heads=None,
        mlp_ratio=4.0,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
    ):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        config = preset_config(PRESETS, preset, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
        if n_mels < patch_size:
            raise ValueError(f"n_mels {n_mels} is smaller than the patch size {patch_size}")
        dim = config["embed_dim"]
        self.n_mels = n_mels
        self.patch_size = (patch_size, patch_size)
        self.fstride, self.tstride = fstride, tstride
        self.target_length = target_length
        self.base_time_grid = (target_length, patch_size, tstride)  # what set_time_resolution(1) restores
        self.embedding_dim = dim
        self.f_dim = (n_mels - patch_size) // fstride + 1
        self.t_dim = self._time_patches(target_length, patch_size, tstride)

        self.patch_embed = nn.Conv2d(1, dim, patch_size, stride=(fstride, tstride))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.f_dim * self.t_dim + 2, dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, config["depth"]).tolist()
        self.blocks = nn.ModuleList(
            ViTBlock(dim, config["num_heads"], mlp_ratio, drop_rate, attn_drop_rate, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        for param in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(param, std=0.02)
        self.apply(init_linear_weights)

    @staticmethod
    def _time_patches(frames, width, stride):
        return (max(frames, width) - width) // stride + 1

    def num_time_patches(self, frames):
        """Patches along time for ``frames`` frames (clips shorter than a patch are padded)."""
        return patches_within(frames, self.patch_size[1], self.tstride)

    def export_frames(self, frames):
        """Frames an exported graph is given for a clip of ``frames``: at least the positional grid's length
        (an exported graph interpolates the grid, the identity at that length; shorter clips are padded to it
        and masked, which gives what eager AST gives them)."""
        return max(int(frames), (self.t_dim - 1) * self.tstride + self.patch_size[1])

    def set_time_grid(self, target_length=None, patch_width=None, tstride=None, patch_resize="pi"):
        """Adapts the model to another time grid: training length, patch width and time stride.

        The positional embedding grid is interpolated bilinearly to the number of
        time patches of ``target_length`` frames (the identity when that number
        does not change); a new patch width or time stride resizes the patch
        embedding's kernel by ``patch_resize`` (``pi`` or ``bilinear``).
        """
        target_length = target_length or self.target_length
        width = patch_width or self.patch_size[1]
        tstride = tstride or self.tstride
        t_dim = self._time_patches(target_length, width, tstride)
        if t_dim != self.t_dim:
            grid = interpolate_time_positions(self.pos_embed[:, 2:].detach(), self.f_dim, t_dim)
            self.pos_embed = nn.Parameter(torch.cat((self.pos_embed[:, :2].detach(), grid), dim=1))
        resize_patch_kernel(self.patch_embed, (self.patch_size[0], width), (self.fstride, tstride), patch_resize)
        self.target_length, self.t_dim = target_length, t_dim
        self.patch_size = (self.patch_size[0], width)
        self.tstride = tstride

    def set_time_resolution(self, factor=1, patch_resize=None):
        """Adapts AST to features of a coarser time resolution (coarse-to-fine training).

        Arguments
        ---------
        factor : int
            1 restores the time grid AST was built for.
        patch_resize : str or None
            ``None``: the features themselves come ``factor`` times coarser, so the
            positional grid is interpolated to a training length ``factor`` times
            shorter. ``"pi"`` or ``"bilinear"``: the features stay at full
            resolution and patches become ``factor`` times wider with a ``factor``
            times larger time stride, the kernel moving by that method.
        """
        length, width, stride = self.base_time_grid
        factor = int(factor)
        if patch_resize is None:
            self.set_time_grid(max(1, length // factor), width, stride)
        else:
            self.set_time_grid(length, width * factor, stride * factor, patch_resize)

    def patch_position_embedding(self, n_time):
        """Positional embedding ``[1, f_dim * n_time, dim]`` of the patches for ``n_time`` columns."""
        return positions_for_time(self.pos_embed[:, 2:], self.f_dim, n_time)

    def forward_features(self, feats, lengths=None):
        """Returns all output tokens ``[batch, 2 + patches, dim]`` and the token mask."""
        frames = valid_frames(feats, lengths, self.n_mels, "AST")
        x = zero_padded_frames(feats, frames)
        batch, time, _ = feats.shape
        if time < self.patch_size[1]:
            x = F.pad(x, (0, 0, 0, self.patch_size[1] - time))
        x = self.patch_embed(x.transpose(1, 2).unsqueeze(1))  # B, D, f, t
        n_time = x.shape[-1]
        x = x.flatten(2).transpose(1, 2) + self.patch_position_embedding(n_time)
        special = torch.cat((self.cls_token, self.dist_token), dim=1) + self.pos_embed[:, :2]
        x = torch.cat((special.expand(batch, -1, -1), x), dim=1)
        x = self.pos_drop(x)

        key_valid = spectrogram_token_mask(
            frames, n_time, self.f_dim, n_special=2, width=self.patch_size[1], stride=self.tstride
        )
        for block in self.blocks:
            x = block(x, key_valid)
        return self.norm(x), key_valid

    def load_pretrained(self, checkpoint, streams=None, head=None, source_name="ViT/AST checkpoint"):
        """Loads ViT/DeiT (timm naming) or official AST weights into an ``AST`` self.

        Arguments
        ---------
        checkpoint : str or dict
            Path or state dict.
        streams : None
            As ``init_from`` passes them (AST has the audio stream only).
        head : Classifier or None
            For an AST checkpoint, also load its ``mlp_head`` (LayerNorm + Linear) into
            this ``Classifier`` (built with ``input_norm=True``).
        source_name : str
            How the report and the error messages name the checkpoint.

        Returns
        -------
        ImportReport
            What was loaded, resized, left at initialisation and ignored.
        """
        state, family, mapper = start_import(
            self, checkpoint, ("ast", "vit"), source_name, "is neither a ViT nor an AST checkpoint"
        )
        report = mapper.report
        prefix = "v." if family == "ast" else ""
        patch = state[f"{prefix}patch_embed.proj.weight"]
        mapper.take(
            "patch_embed.weight",
            f"{prefix}patch_embed.proj.weight",
            (lambda w: w.sum(dim=1, keepdim=True)) if patch.shape[1] != 1 else None,
            resized=patch.shape[1] != 1,
        )
        mapper.take("patch_embed.bias", f"{prefix}patch_embed.proj.bias")
        mapper.take("cls_token", f"{prefix}cls_token")
        if not mapper.take("dist_token", f"{prefix}dist_token"):
            mapper.take("dist_token", f"{prefix}cls_token", resized=True)  # plain ViT: start from the CLS token
        pos = state[f"{prefix}pos_embed"]
        n_special = 2 if f"{prefix}dist_token" in state else 1
        patches = pos[:, n_special:]
        f_dim, t_dim = self.f_dim, self.t_dim

        def position(_):
            """The checkpoint's position embeddings on this model's patch grid."""
            if family == "ast" and patches.shape[1] == f_dim * t_dim:
                grid_part = patches
            elif family == "ast":
                raise CheckpointLayoutError(
                    f"{source_name}: its positional embedding has {patches.shape[1]} patches; this AST has "
                    f"{f_dim} x {t_dim} (build it with the checkpoint's n_mels, target_length and strides)"
                )
            else:
                grid = square_grid(patches, source_name)
                grid_part = adapt_position_embedding(grid, f_dim, t_dim).reshape(grid.shape[0], -1).t().unsqueeze(0)
            special = pos[:, :n_special]
            if n_special == 1:
                special = torch.cat((special, special), dim=1)
            return torch.cat((special, grid_part), dim=1)

        mapper.take("pos_embed", f"{prefix}pos_embed", position, resized=not (family == "ast"))
        for key in list(self.state_dict()):
            if key.startswith("blocks.") or key.startswith("norm."):
                mapper.take(key, prefix + key)
        ignored = ("head", "fc_norm", "mlp_head", "pre_logits")
        mapper.finish(self, ignored_sources=ignored)
        if head is not None and family == "ast":
            head_state = {
                "norm.weight": state["mlp_head.0.weight"],
                "norm.bias": state["mlp_head.0.bias"],
                "out.weight": state["mlp_head.1.weight"],
                "out.bias": state["mlp_head.1.bias"],
            }
            head.load_state_dict(head_state)
            report.loaded += [f"head.{k}" for k in head_state]
        logger.info(report.summary())
        return report

    def forward(self, feats, lengths=None):
        """Embeds ``[batch, time, n_mels]`` features: mean of the CLS and distillation outputs."""
        tokens, _ = self.forward_features(feats, lengths)
        return ((tokens[:, 0] + tokens[:, 1]) / 2).unsqueeze(1)


#: Version 0.2 defined it here; it lives in ``nnet.vit`` (``ViTBlock`` is imported above, for AST itself).
__getattr__ = moved_names(__name__, {"MultiHeadSelfAttention": "speechbrain_datar.nnet.vit"})
