"""Start from ImageNet (or AudioSet): load DAT, ViT/DeiT and AST checkpoints into DATAR and AST.

Supported layouts:

- **DAT** (LeapLabTHU/DAT, CVPR 2022 release): the ``model`` state dict of DAT-T/S/B,
  into the DATAR presets of the same shape.
- **ViT / DeiT** with timm naming (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``pos_embed``;
  DeiT's distilled models add ``dist_token``), into ``AST``.
- **AST** (YuanGongND/ast, e.g. ``audioset_10_10_0.4593.pth``: ``module.v.*`` and
  ``module.mlp_head.*``), into ``AST`` (and its head into a ``Classifier``).

What adapts: RGB patch embeddings are summed to one channel (as AST does), relative
position tables and positional embeddings are resized to the new maps, classification
heads are dropped. Everything is listed in an ``ImportReport``: loaded, resized, left
at initialisation, ignored. A checkpoint of another family, or with missing or extra
keys or wrong shapes, raises ``CheckpointLayoutError`` naming the keys.
"""

import json
import logging
import math
import os
import pickle
import re
import zipfile

import torch
import torch.nn.functional as F

from speechbrain_datar.errors import DataError, MissingDataError
from speechbrain_datar.lobes.models.ast import AST
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.lobes.models.mbt import MBT, MODALITIES, LateFusion
from speechbrain_datar.nnet.deformable_attention import DeformableAttention

logger = logging.getLogger(__name__)


class CheckpointLayoutError(DataError):
    """The checkpoint does not have the layout the target model needs."""


class ImportReport:
    """What happened to every parameter during an import."""

    def __init__(self, source):
        self.source = source
        self.loaded, self.resized, self.initialised, self.ignored = [], [], [], []

    def to_dict(self):
        """JSON-friendly view."""
        return {
            "source": self.source,
            "loaded": self.loaded,
            "resized": self.resized,
            "left_at_initialisation": self.initialised,
            "ignored_from_checkpoint": self.ignored,
        }

    def summary(self):
        """One line with the counts."""
        return (
            f"{self.source}: {len(self.loaded)} tensors loaded, {len(self.resized)} resized, "
            f"{len(self.initialised)} left at initialisation, {len(self.ignored)} ignored"
        )

    def save(self, path):
        """Writes the report as JSON."""
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)


def check_checkpoint_file(path):
    """Refuses, before anything is read into memory, a file that is not a checkpoint as ``torch.save`` writes
    it: missing, empty, not a zip archive, or a zip whose members are compressed or add up to more than the
    file (a small file that would unpack to gigabytes).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.pth")
    >>> _ = open(path, "wb").write(b"not a checkpoint")
    >>> check_checkpoint_file(path)
    Traceback (most recent call last):
    ...
    speechbrain_datar.pretrained.checkpoint_import.CheckpointLayoutError: .../bad.pth is not a PyTorch checkpoint ...
    """
    if not os.path.isfile(path):
        raise MissingDataError(f"checkpoint {path} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointLayoutError(f"{path} is empty (an interrupted download?)")
    if not zipfile.is_zipfile(path):
        raise CheckpointLayoutError(
            f"{path} is not a PyTorch checkpoint in torch.save's format (a zip archive, the format since "
            f"torch 1.6): a truncated or damaged download, or another kind of file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointLayoutError(f"{path} is a damaged checkpoint: {error}") from None
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if compressed or sum(m.file_size for m in members) > size:
        raise CheckpointLayoutError(
            f"{path} is not a checkpoint as torch.save writes it: its members "
            + (f"are compressed ({compressed[0]})" if compressed else "add up to more than the file")
            + ", so loading it could take far more memory than the file's size")


def load_weights_only(path):
    """``torch.load`` of tensors and plain containers only.

    A file that needs anything else is refused unopened (unpickling arbitrary objects can run code),
    with the offending type named; a file that is not a sound checkpoint (``check_checkpoint_file``),
    a truncated or damaged one, and tensors that declare more elements than their data holds are refused
    with one line saying so.
    """
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error)) or re.search(r"global:? ([\w.]+)", str(error))
        if not found:
            raise CheckpointLayoutError(f"{path} is a damaged checkpoint: {_first_line(error)}") from None
        raise CheckpointLayoutError(
            f"{path} holds {found.group(1)}, not only tensors, and was not loaded (loading it could run code). "
            f"If you trust the file, keep only its weights: python -c \"import torch; "
            f"c = torch.load('{path}', weights_only=False); torch.save(c.get('model', c), 'weights.pth')\""
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointLayoutError(f"{path} cannot be read as a checkpoint (truncated or damaged?): "
                                    f"{_first_line(error)}") from None
    _check_tensor_sizes(checkpoint, path)
    return checkpoint


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _check_tensor_sizes(value, path, name="checkpoint", depth=0):
    """Refuses a tensor that declares more elements than its storage holds (a stride-0 view makes a tiny file
    declare a tensor of billions of elements, which the first arithmetic on it would allocate)."""
    if depth > 16:
        raise CheckpointLayoutError(f"{path}: containers nested deeper than 16 levels")
    if isinstance(value, torch.Tensor):
        if value.numel() * value.element_size() > value.untyped_storage().nbytes():
            raise CheckpointLayoutError(
                f"{path}: tensor {name} declares {tuple(value.shape)} ({value.numel()} elements) over "
                f"{value.untyped_storage().nbytes()} bytes of data: not a checkpoint torch.save writes")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_tensor_sizes(item, path, f"{name}.{key}" if name != "checkpoint" else str(key), depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_tensor_sizes(item, path, f"{name}[{index}]", depth + 1)


def read_state_dict(checkpoint):
    """A flat state dict from a path or dict: unwraps ``model``/``state_dict`` entries and ``module.`` prefixes."""
    if isinstance(checkpoint, str):
        checkpoint = load_weights_only(checkpoint)
    if not isinstance(checkpoint, dict):
        raise CheckpointLayoutError(f"a checkpoint must hold a state dict, got {type(checkpoint).__name__}")
    for key in ("model", "state_dict", "model_state"):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
            break
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            continue
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def detect_family(state):
    """``"dat"``, ``"ast"``, ``"vit"`` or ``None`` for a flat state dict."""
    if any(k.startswith("stages.") and ".attns." in k for k in state) and "patch_proj.0.weight" in state:
        return "dat"
    if "v.pos_embed" in state and "v.patch_embed.proj.weight" in state:
        return "ast"
    if "pos_embed" in state and "patch_embed.proj.weight" in state and "blocks.0.attn.qkv.weight" in state:
        return "vit"
    return None


def _examples(keys, n=8):
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def resize_table(table, size, mode):
    """Resizes a ``[channels, H, W]`` table to ``size``.

    ``"interpolate"``: bicubic over the whole table (DAT's normalised indexing).
    ``"crop"``: keeps the centre entries at the same token displacements and
    extends the border values (the token convention's indexing).
    """
    if tuple(table.shape[-2:]) == tuple(size):
        return table
    if mode == "interpolate":
        return F.interpolate(table.unsqueeze(0).float(), size=size, mode="bicubic", align_corners=False)[0]
    channels, height, width = table.shape
    out = table.new_empty(channels, *size)
    rows = torch.arange(size[0]) - size[0] // 2 + height // 2
    cols = torch.arange(size[1]) - size[1] // 2 + width // 2
    return table[:, rows.clamp(0, height - 1)][:, :, cols.clamp(0, width - 1)].to(out.dtype)


class _Mapper:
    """Collects target tensors from a source state dict and checks the whole mapping."""

    def __init__(self, source_state, target_model, report):
        self.source = source_state
        self.target = target_model.state_dict()
        self.report = report
        self.out = {}
        self.used = set()
        self.attempted = set()
        self.bad_shapes = []

    def take(self, target_key, source_key, transform=None, resized=False):
        if source_key not in self.source:
            return False
        value = self.source[source_key]
        self.used.add(source_key)
        self.attempted.add(target_key)
        expected = self.target[target_key].shape
        if transform is not None:
            try:
                value = transform(value)
            except (IndexError, ValueError, RuntimeError) as error:  # a tensor of another rank or shape
                self.bad_shapes.append(f"{source_key} {tuple(value.shape)} -> {target_key} {tuple(expected)} "
                                       f"({_first_line(error)})")
                return True
        if tuple(value.shape) != tuple(expected):
            self.bad_shapes.append(f"{source_key} {tuple(value.shape)} -> {target_key} {tuple(expected)}")
            return True
        self.out[target_key] = value.to(self.target[target_key].dtype)
        (self.report.resized if resized else self.report.loaded).append(target_key)
        return True

    def finish(self, model, allowed_at_init=(), ignored_sources=()):
        missing = [
            k for k in self.target
            if k not in self.attempted and not any(k.startswith(p) for p in allowed_at_init)
            and not k.endswith("_index")
        ]
        extra = [
            k for k in self.source
            if k not in self.used and not any(part in k for part in ignored_sources)
        ]
        problems = []
        if self.bad_shapes:
            problems.append(f"wrong shapes: {_examples(self.bad_shapes)}")
        if missing:
            problems.append(f"missing from the checkpoint: {_examples(missing)}")
        if extra:
            problems.append(f"not expected in the checkpoint: {_examples(extra)}")
        if problems:
            raise CheckpointLayoutError(f"{self.report.source} does not fit {type(model).__name__}: " + "; ".join(problems))
        self.report.initialised = sorted(k for k in self.target if k not in self.out and not k.endswith("_index"))
        self.report.ignored = sorted(k for k in self.source if k not in self.used)
        result = model.load_state_dict(self.out, strict=False)
        unexpected = list(result.unexpected_keys)
        if unexpected:
            raise CheckpointLayoutError(f"unexpected keys after mapping: {_examples(unexpected)}")
        return self.report


def _start_import(model, model_class, checkpoint, families, source_name, wrong_family):
    """Reads the checkpoint, checks the target's class and the checkpoint's family; returns state, family, mapper."""
    if not isinstance(model, model_class):
        raise TypeError(f"this import loads into {model_class.__name__}, not {type(model).__name__}")
    state = read_state_dict(checkpoint)
    family = detect_family(state)
    if family not in families:
        raise CheckpointLayoutError(
            f"{source_name} {wrong_family}: it looks like {family or 'an unknown layout'}, "
            f"with keys such as {_examples(state, 4)}"
        )
    return state, family, _Mapper(state, model, ImportReport(source_name))


def import_dat(model, checkpoint, table_resize=None, source_name="DAT checkpoint"):
    """Loads a DAT (CVPR 2022 layout) checkpoint into a ``DATAR`` model.

    Arguments
    ---------
    model : DATAR
        Target; its stage layout must match the checkpoint's (e.g. ``preset: tiny`` for DAT-T).
    checkpoint : str or dict
        Path or state dict (a ``{"model": ...}`` wrapper is fine).
    table_resize : str or None
        How relative-position tables of other sizes are adapted: ``"interpolate"``
        or ``"crop"``; by default ``crop`` for the token grid convention and
        ``interpolate`` for ``dat_v1``.
    source_name : str
        Name used in the report and errors.

    Returns
    -------
    ImportReport
    """
    state, _, mapper = _start_import(
        model, DATAR, checkpoint, ("dat",), source_name,
        "is not a DAT checkpoint (DAT keys look like 'stages.0.attns.0.proj_qkv.weight')",
    )
    report = mapper.report
    mapper.take("patch_proj.weight", "patch_proj.0.weight", lambda w: w.sum(dim=1, keepdim=True), resized=True)
    mapper.take("patch_proj.bias", "patch_proj.0.bias")
    for suffix in ("weight", "bias"):
        mapper.take(f"patch_proj.norm.{suffix}", f"patch_proj.1.norm.{suffix}")
        mapper.take(f"norm.{suffix}", f"cls_norm.norm.{suffix}")
    for i in range(model.num_stages - 1):  # DAT's down_projs[i] follows its stage i; ours starts stage i + 1
        mapper.take(f"stages.{i + 1}.downsample.weight", f"down_projs.{i}.0.weight")
        for suffix in ("weight", "bias"):
            mapper.take(f"stages.{i + 1}.downsample.norm.{suffix}", f"down_projs.{i}.1.norm.{suffix}")
    mismatched = []
    for i, blocks in enumerate(model.stages):
        for d, block in enumerate(blocks):
            ours, theirs = f"stages.{i}.{d}.", f"stages.{i}."
            for suffix in ("weight", "bias"):
                mapper.take(f"{ours}norm1.{suffix}", f"{theirs}layer_norms.{2 * d}.norm.{suffix}")
                mapper.take(f"{ours}norm2.{suffix}", f"{theirs}layer_norms.{2 * d + 1}.norm.{suffix}")
                mapper.take(f"{ours}mlp.fc1.{suffix}", f"{theirs}mlps.{d}.chunk.linear1.{suffix}")
                mapper.take(f"{ours}mlp.fc2.{suffix}", f"{theirs}mlps.{d}.chunk.linear2.{suffix}")
            src = f"{theirs}attns.{d}."
            deformable_there = f"{src}proj_q.weight" in state
            if isinstance(block.attn, DeformableAttention) != deformable_there:
                if f"{src}proj_q.weight" in state or f"{src}proj_qkv.weight" in state:
                    mismatched.append(f"stages.{i}.{d}")
                continue
            if deformable_there:
                _map_deformable(mapper, block.attn, f"{ours}attn.", src, table_resize)
            else:
                _map_window(mapper, block.attn, f"{ours}attn.", src)
    if mismatched:
        raise CheckpointLayoutError(
            f"{source_name}: these blocks are deformable in one model and window attention in the other: "
            f"{_examples(mismatched)} (check the preset and the 'deformable' switch)"
        )
    mapper.finish(
        model, allowed_at_init=("input_adaptor.",),
        ignored_sources=("cls_head.", "relative_position_index", "attn_mask", "q_grid", "reference"),
    )
    logger.info(report.summary())
    return report


def _map_window(mapper, attn, ours, src):
    for suffix in ("weight", "bias"):
        mapper.take(f"{ours}qkv.{suffix}", f"{src}proj_qkv.{suffix}")
        mapper.take(f"{ours}proj.{suffix}", f"{src}proj_out.{suffix}")
    key = f"{src}relative_position_bias_table"
    if key in mapper.source:
        wh, ww = attn.window_size
        n, heads = mapper.source[key].shape
        side = int(math.isqrt(n))
        resized = (side, side) != (2 * wh - 1, 2 * ww - 1)

        def transform(table):
            grid = table.t().reshape(heads, side, side)
            grid = resize_table(grid, (2 * wh - 1, 2 * ww - 1), "interpolate")
            return grid.reshape(heads, -1).t()

        mapper.take(f"{ours}relative_position_bias_table", key, transform, resized=resized)


def _map_deformable(mapper, attn, ours, src, table_resize):
    for name in ("q", "k", "v", "out"):
        mapper.take(f"{ours}proj_{name}.weight", f"{src}proj_{name}.weight", lambda w: w.flatten(1))
        mapper.take(f"{ours}proj_{name}.bias", f"{src}proj_{name}.bias")
    for suffix in ("weight", "bias"):
        mapper.take(f"{ours}offset_generator.0.{suffix}", f"{src}conv_offset.0.{suffix}")
        mapper.take(f"{ours}offset_generator.1.{suffix}", f"{src}conv_offset.1.norm.{suffix}")
    mapper.take(f"{ours}offset_generator.3.weight", f"{src}conv_offset.3.weight")
    key = f"{src}rpe_table"
    if key in mapper.source and attn.rpe_table is not None:
        mode = table_resize or ("crop" if attn.grid_convention == "token" else "interpolate")
        size = tuple(attn.rpe_table.shape[-2:])
        resized = tuple(mapper.source[key].shape[-2:]) != size
        mapper.take(f"{ours}rpe_table", key, lambda t: resize_table(t, size, mode), resized=resized)


def adapt_position_embedding(grid, f_dim, t_dim):
    """AST's adaptation of a square ``[dim, n, n]`` positional grid to ``(f_dim, t_dim)``:
    centre crop where the target is smaller, bilinear interpolation where it is larger.
    """
    dim, rows, cols = grid.shape
    grid = grid.unsqueeze(0)
    if t_dim <= cols:
        start = cols // 2 - t_dim // 2
        grid = grid[..., start : start + t_dim]
    else:
        grid = F.interpolate(grid, size=(rows, t_dim), mode="bilinear", align_corners=False)
    if f_dim <= rows:
        start = rows // 2 - f_dim // 2
        grid = grid[:, :, start : start + f_dim]
    else:
        grid = F.interpolate(grid, size=(f_dim, t_dim), mode="bilinear", align_corners=False)
    return grid[0]


def _square_grid(positions, name):
    """``[1, n*n, dim]`` patch positions -> ``[dim, n, n]``."""
    side = int(math.isqrt(positions.shape[1]))
    if side * side != positions.shape[1]:
        raise CheckpointLayoutError(f"{name}: a ViT's positional embedding must cover a square grid, "
                                    f"got {positions.shape[1]} patches")
    return positions[0].t().reshape(-1, side, side)


def import_ast(model, checkpoint, head=None, source_name="ViT/AST checkpoint"):
    """Loads ViT/DeiT (timm naming) or official AST weights into an ``AST`` model.

    Arguments
    ---------
    model : AST
        Target encoder.
    checkpoint : str or dict
        Path or state dict.
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
    state, family, mapper = _start_import(
        model, AST, checkpoint, ("ast", "vit"), source_name, "is neither a ViT nor an AST checkpoint"
    )
    report = mapper.report
    prefix = "v." if family == "ast" else ""
    patch = state[f"{prefix}patch_embed.proj.weight"]
    mapper.take("patch_embed.weight", f"{prefix}patch_embed.proj.weight",
                (lambda w: w.sum(dim=1, keepdim=True)) if patch.shape[1] != 1 else None, resized=patch.shape[1] != 1)
    mapper.take("patch_embed.bias", f"{prefix}patch_embed.proj.bias")
    mapper.take("cls_token", f"{prefix}cls_token")
    if not mapper.take("dist_token", f"{prefix}dist_token"):
        mapper.take("dist_token", f"{prefix}cls_token", resized=True)  # plain ViT: start from the CLS token
    pos = state[f"{prefix}pos_embed"]
    n_special = 2 if f"{prefix}dist_token" in state else 1
    patches = pos[:, n_special:]
    f_dim, t_dim = model.f_dim, model.t_dim

    def position(_):
        if family == "ast" and patches.shape[1] == f_dim * t_dim:
            grid_part = patches
        elif family == "ast":
            raise CheckpointLayoutError(
                f"{source_name}: its positional embedding has {patches.shape[1]} patches; this AST has "
                f"{f_dim} x {t_dim} (build it with the checkpoint's n_mels, target_length and strides)"
            )
        else:
            grid = _square_grid(patches, source_name)
            grid_part = adapt_position_embedding(grid, f_dim, t_dim).reshape(grid.shape[0], -1).t().unsqueeze(0)
        special = pos[:, :n_special]
        if n_special == 1:
            special = torch.cat((special, special), dim=1)
        return torch.cat((special, grid_part), dim=1)

    mapper.take("pos_embed", f"{prefix}pos_embed", position, resized=not (family == "ast"))
    for key in list(model.state_dict()):
        if key.startswith("blocks.") or key.startswith("norm."):
            mapper.take(key, prefix + key)
    ignored = ("head", "fc_norm", "mlp_head", "pre_logits")
    mapper.finish(model, ignored_sources=ignored)
    if head is not None and family == "ast":
        head_state = {
            "norm.weight": state["mlp_head.0.weight"], "norm.bias": state["mlp_head.0.bias"],
            "out.weight": state["mlp_head.1.weight"], "out.bias": state["mlp_head.1.bias"],
        }
        head.load_state_dict(head_state)
        report.loaded += [f"head.{k}" for k in head_state]
    logger.info(report.summary())
    return report


def _vit_patch_kernel(weight, channels, frames=None, central=0):
    """A ViT's RGB patch kernel ``[dim, 3, p, p]`` for a spectrogram (summed over RGB, ``channels`` 1) or
    for tubelets of ``frames`` frames (the kernel on the central frame, zeros on the others)."""
    if channels == 1 and weight.shape[1] != 1:
        weight = weight.sum(dim=1, keepdim=True)
    if frames is None:
        return weight
    tubelet = weight.new_zeros(weight.shape[0], weight.shape[1], frames, *weight.shape[-2:])
    tubelet[:, :, central] = weight
    return tubelet


def import_mbt(model, checkpoint, streams=None, source_name="ViT/AST checkpoint"):
    """Loads an ImageNet ViT (timm naming, e.g. ImageNet-21k ViT-B/16) or an official AST checkpoint into
    streams of an ``MBT``.

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
    model : MBT
        Target.
    checkpoint : str or dict
        Path or state dict.
    streams : sequence or None
        The modalities to fill (default: all of the model's for a ViT, ``audio`` for an AST).
    source_name : str
        How the report and the error messages name the checkpoint.

    Returns
    -------
    ImportReport
    """
    state, family, mapper = _start_import(
        model, MBT, checkpoint, ("ast", "vit"), source_name, "is neither a ViT nor an AST checkpoint"
    )
    streams = tuple(streams or (model.modalities if family == "vit" else ("audio",)))
    unknown = [m for m in streams if m not in model.modalities]
    if unknown:
        raise CheckpointLayoutError(f"{source_name}: this MBT has no {unknown} stream (it has {model.modalities})")
    if family == "ast" and streams != ("audio",):
        raise CheckpointLayoutError(f"{source_name} is an AST checkpoint: it can fill the audio stream only, "
                                    f"not {list(streams)} (give the video stream an ImageNet ViT)")
    prefix = "v." if family == "ast" else ""
    pos = state[f"{prefix}pos_embed"]
    n_special = 2 if f"{prefix}dist_token" in state else 1
    patches = pos[:, n_special:]
    for m in streams:
        proj = model.tokenizers[m].proj
        frames = proj.weight.shape[2] if m == "video" else None
        mapper.take(f"tokenizers.{m}.proj.weight", f"{prefix}patch_embed.proj.weight",
                    lambda w: _vit_patch_kernel(w, proj.weight.shape[1], frames, (frames or 1) // 2), resized=True)
        mapper.take(f"tokenizers.{m}.proj.bias", f"{prefix}patch_embed.proj.bias")
        mapper.take(f"cls.{m}", f"{prefix}cls_token")
        mapper.take(f"pos_embed.{m}", f"{prefix}pos_embed",
                    lambda p: torch.cat((p[:, :1], _stream_positions(model, m, patches, family, source_name)), dim=1),
                    resized=True)
        for key in model.blocks[m].state_dict():
            mapper.take(f"blocks.{m}.{key}", f"{prefix}blocks.{key}")
    for suffix in ("weight", "bias"):
        mapper.take(f"norm.{suffix}", f"{prefix}norm.{suffix}")
    others = tuple(f"{part}.{m}." for m in model.modalities if m not in streams
                   for part in ("tokenizers", "blocks")) + tuple(
        f"{part}.{m}" for m in model.modalities if m not in streams for part in ("cls", "pos_embed"))
    mapper.finish(model, allowed_at_init=("bottleneck",) + others,
                  ignored_sources=("head", "fc_norm", "mlp_head", "pre_logits", "dist_token"))
    logger.info(mapper.report.summary())
    return mapper.report


def _stream_positions(model, modality, patches, family, source_name):
    """The checkpoint's patch positions ``[1, n, dim]`` on one MBT stream's grid."""
    dim = patches.shape[-1]
    if modality == "audio":
        t_dim = (model.pos_embed["audio"].shape[1] - 1) // model.f_dim
        if family == "ast":  # AST's overlapping grid: 12 frequency rows (128 bins, stride 10)
            if patches.shape[1] % 12:
                raise CheckpointLayoutError(f"{source_name}: {patches.shape[1]} positions are not 12 rows of an AST grid")
            grid = patches[0].t().reshape(dim, 12, -1)
            grid = F.interpolate(grid[None], size=(model.f_dim, t_dim), mode="bilinear", align_corners=False)[0]
        else:
            grid = adapt_position_embedding(_square_grid(patches, source_name), model.f_dim, t_dim)
        return grid.reshape(dim, -1).t().unsqueeze(0)
    n_time, side = model.video_grid
    grid = _square_grid(patches, source_name)
    if grid.shape[-1] != side:
        grid = F.interpolate(grid[None], size=(side, side), mode="bilinear", align_corners=False)[0]
    return grid.reshape(dim, -1).t().unsqueeze(0).repeat(1, n_time, 1)


def _import_into(model, checkpoint, streams, head, name):
    """One checkpoint into a DATAR, AST or MBT, or into the named streams of an MBT or a ``LateFusion``; a
    checkpoint whose tensors have other ranks or shapes than the mapping reads is refused in one line."""
    try:
        return _import_model(model, checkpoint, streams, head, name)
    except (IndexError, ValueError, KeyError) as error:
        if isinstance(error, DataError):
            raise
        raise CheckpointLayoutError(f"{name} does not fit {type(model).__name__}: a tensor it needs is missing or "
                                    f"has another shape ({type(error).__name__}: {_first_line(error)})") from None


def _import_model(model, checkpoint, streams, head, name):
    if isinstance(model, LateFusion):
        if streams is None:
            raise CheckpointLayoutError(
                "a LateFusion model takes one checkpoint per stream: init_from: {audio: <DAT or AST "
                "checkpoint>, video: <ImageNet ViT>}")
        report = ImportReport(name)
        for stream in streams:
            target, prefix = (model.audio_encoder, "audio_encoder.") if stream == "audio" else (
                model.video_encoder, "video_encoder.")
            part = _import_model(target, checkpoint, None if stream == "audio" else ("video",), head, name)
            report.loaded += [prefix + k for k in part.loaded]
            report.resized += [prefix + k for k in part.resized]
            report.ignored += part.ignored
        return report
    if isinstance(model, MBT):
        return import_mbt(model, checkpoint, streams=streams, source_name=name)
    if streams not in (None, ("audio",)):
        raise CheckpointLayoutError(f"{type(model).__name__} has an audio stream only, not {list(streams)}")
    if isinstance(model, DATAR):
        return import_dat(model, checkpoint, source_name=name)
    if isinstance(model, AST):
        return import_ast(model, checkpoint, head=head, source_name=name)
    raise TypeError(f"init_from supports DATAR, AST, MBT and LateFusion, not {type(model).__name__}")


def init_from(model, checkpoint, head=None, report_path=None):
    """Loads ``checkpoint`` into a DATAR, AST, MBT or LateFusion model, whichever ``model`` is; usable from YAML.

    ``checkpoint`` is a path (or state dict), or for audio-visual models one per
    stream, ``{audio: ..., video: ...}``: e.g. an official AST checkpoint for MBT's
    audio stream and an ImageNet-21k ViT for its visual one, or a DAT checkpoint for
    the DATAR of a ``LateFusion``. A ViT given as one path fills every MBT stream.

    Example (hparams)::

        init_report: !apply:speechbrain_datar.pretrained.checkpoint_import.init_from
            model: !ref <embedding_model>
            checkpoint: /path/to/dat_tiny_in1k.pth
    """
    if isinstance(checkpoint, dict) and checkpoint and set(checkpoint) <= set(MODALITIES):
        parts = [_import_into(model, path, (stream,), head, str(path)) for stream, path in checkpoint.items()]
        report = ImportReport(" + ".join(part.source for part in parts))
        for part in parts:
            report.loaded += part.loaded
            report.resized += part.resized
            report.ignored += part.ignored
        done = set(report.loaded) | set(report.resized)
        report.initialised = sorted(k for k in model.state_dict() if k not in done and not k.endswith("_index"))
    else:
        report = _import_into(model, checkpoint, None, head, checkpoint if isinstance(checkpoint, str) else "checkpoint")
    if report_path:
        report.save(report_path)
    return report
