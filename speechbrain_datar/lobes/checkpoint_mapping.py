"""Taking weights from other families' checkpoints: the helpers every model's ``load_pretrained`` shares.

A model family knows how its keys and shapes relate to a foreign checkpoint's (``DATAR.load_pretrained``
for DAT, ``AST.load_pretrained`` for ViT/DeiT and AST, ``MBT.load_pretrained``, ``LateFusion``); what they
share lives here: reading a checkpoint safely (``load_weights_only``: tensors only, sizes bounded by the
file), telling its family, resizing tables and positional grids, and ``Mapper``, which collects the
target tensors, checks every shape and names what is missing, extra or misshapen, and an ``ImportReport``.
"""

import json
import math
import os
import pickle
import re
import zipfile

import torch
import torch.nn.functional as F

from speechbrain_datar.errors import DataError, MissingDataError


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
    speechbrain_datar.lobes.checkpoint_mapping.CheckpointLayoutError: .../bad.pth is not a PyTorch checkpoint ...
    """
    if not os.path.isfile(path):
        raise MissingDataError(f"checkpoint {path} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointLayoutError(f"{path} is empty (an interrupted download?)")
    if not zipfile.is_zipfile(path):
        raise CheckpointLayoutError(
            f"{path} is not a PyTorch checkpoint in torch.save's format (a zip archive, the format since "
            f"torch 1.6): a truncated or damaged download, or another kind of file"
        )
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
            + ", so loading it could take far more memory than the file's size"
        )


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
            raise CheckpointLayoutError(f"{path} is a damaged checkpoint: {first_line(error)}") from None
        raise CheckpointLayoutError(
            f"{path} holds {found.group(1)}, not only tensors, and was not loaded (loading it could run code). "
            f'If you trust the file, keep only its weights: python -c "import torch; '
            f"c = torch.load('{path}', weights_only=False); torch.save(c.get('model', c), 'weights.pth')\""
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointLayoutError(
            f"{path} cannot be read as a checkpoint (truncated or damaged?): {first_line(error)}"
        ) from None
    _check_tensor_sizes(checkpoint, path)
    return checkpoint


def first_line(error):
    """The first line of an error's message (for one-line reports)."""
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
                f"{value.untyped_storage().nbytes()} bytes of data: not a checkpoint torch.save writes"
            )
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
        state[key[len("module.") :] if key.startswith("module.") else key] = value
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


def examples(keys, n=8):
    """A few of ``names`` and how many more there are, for one-line messages."""
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


class Mapper:
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
        """Takes ``source_key`` (through ``transform``) as ``target_key``; ``False`` when the source lacks it."""
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
                self.bad_shapes.append(
                    f"{source_key} {tuple(value.shape)} -> {target_key} {tuple(expected)} ({first_line(error)})"
                )
                return True
        if tuple(value.shape) != tuple(expected):
            self.bad_shapes.append(f"{source_key} {tuple(value.shape)} -> {target_key} {tuple(expected)}")
            return True
        self.out[target_key] = value.to(self.target[target_key].dtype)
        (self.report.resized if resized else self.report.loaded).append(target_key)
        return True

    def finish(self, model, allowed_at_init=(), ignored_sources=()):
        """Loads what was taken and returns the report; refuses, in one line, wrong shapes, missing and extra keys."""
        missing = [
            k
            for k in self.target
            if k not in self.attempted
            and not any(k.startswith(p) for p in allowed_at_init)
            and not k.endswith("_index")
        ]
        extra = [k for k in self.source if k not in self.used and not any(part in k for part in ignored_sources)]
        problems = []
        if self.bad_shapes:
            problems.append(f"wrong shapes: {examples(self.bad_shapes)}")
        if missing:
            problems.append(f"missing from the checkpoint: {examples(missing)}")
        if extra:
            problems.append(f"not expected in the checkpoint: {examples(extra)}")
        if problems:
            raise CheckpointLayoutError(
                f"{self.report.source} does not fit {type(model).__name__}: " + "; ".join(problems)
            )
        self.report.initialised = sorted(k for k in self.target if k not in self.out and not k.endswith("_index"))
        self.report.ignored = sorted(k for k in self.source if k not in self.used)
        result = model.load_state_dict(self.out, strict=False)
        unexpected = list(result.unexpected_keys)
        if unexpected:
            raise CheckpointLayoutError(f"unexpected keys after mapping: {examples(unexpected)}")
        return self.report


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


def square_grid(positions, name):
    """``[1, n*n, dim]`` patch positions -> ``[dim, n, n]``."""
    side = int(math.isqrt(positions.shape[1]))
    if side * side != positions.shape[1]:
        raise CheckpointLayoutError(
            f"{name}: a ViT's positional embedding must cover a square grid, got {positions.shape[1]} patches"
        )
    return positions[0].t().reshape(-1, side, side)


def vit_patch_kernel(weight, channels, frames=None, central=0):
    """A ViT's RGB patch kernel ``[dim, 3, p, p]`` for a spectrogram (summed over RGB, ``channels`` 1) or
    for tubelets of ``frames`` frames (the kernel on the central frame, zeros on the others)."""
    if channels == 1 and weight.shape[1] != 1:
        weight = weight.sum(dim=1, keepdim=True)
    if frames is None:
        return weight
    tubelet = weight.new_zeros(weight.shape[0], weight.shape[1], frames, *weight.shape[-2:])
    tubelet[:, :, central] = weight
    return tubelet


def start_import(model, checkpoint, families, source_name, wrong_family):
    """Reads the checkpoint and checks its family; returns the state, the family and a ``Mapper`` into ``model``."""
    state = read_state_dict(checkpoint)
    family = detect_family(state)
    if family not in families:
        raise CheckpointLayoutError(
            f"{source_name} {wrong_family}: it looks like {family or 'an unknown layout'}, "
            f"with keys such as {examples(state, 4)}"
        )
    return state, family, Mapper(state, model, ImportReport(source_name))
