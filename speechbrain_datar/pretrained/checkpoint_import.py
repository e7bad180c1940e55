"""Start from ImageNet (or AudioSet): ``init_from`` loads a foreign checkpoint into any model of this package.

Each model family knows how to take the checkpoints it can use (``load_pretrained``, with the helpers of
``lobes.checkpoint_mapping``):

- **DAT** (LeapLabTHU/DAT, CVPR 2022 release): the ``model`` state dict of DAT-T/S/B, into the DATAR
  presets of the same shape (``DATAR.load_pretrained``).
- **ViT / DeiT** with timm naming (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``pos_embed``;
  DeiT's distilled models add ``dist_token``), into ``AST`` and into ``MBT``'s streams.
- **AST** (YuanGongND/ast, e.g. ``audioset_10_10_0.4593.pth``: ``module.v.*`` and ``module.mlp_head.*``),
  into ``AST`` (and its head into a ``Classifier``) or MBT's audio stream.
- **CNN14** of SpeechBrain's ESC-50 recipe, into ``CNN14``.

What adapts: RGB patch embeddings are summed to one channel (as AST does), relative position tables and
positional embeddings are resized to the new maps, classification heads are dropped. Everything is listed
in an ``ImportReport``: loaded, resized, left at initialisation, ignored. A checkpoint of another family,
with missing or extra keys or wrong shapes, or that is not a sound checkpoint file, raises
``CheckpointLayoutError`` in one line naming the problem.
"""

from speechbrain_datar.deprecation import moved_names, warn_moved
from speechbrain_datar.errors import DataError
from speechbrain_datar.lobes.checkpoint_mapping import CheckpointLayoutError, ImportReport, first_line
from speechbrain_datar.lobes.models.mbt import MODALITIES


def import_dat(model, checkpoint, table_resize=None, source_name="DAT checkpoint"):
    """Version 0.2's name of ``DATAR.load_pretrained``."""
    warn_moved("import_dat(model, ...)", "model.load_pretrained(...)")
    return model.load_pretrained(checkpoint, source_name=source_name, table_resize=table_resize)


def import_ast(model, checkpoint, head=None, source_name="ViT/AST checkpoint"):
    """Version 0.2's name of ``AST.load_pretrained``."""
    warn_moved("import_ast(model, ...)", "model.load_pretrained(...)")
    return model.load_pretrained(checkpoint, head=head, source_name=source_name)


def import_mbt(model, checkpoint, streams=None, source_name="ViT/AST checkpoint"):
    """Version 0.2's name of ``MBT.load_pretrained``."""
    warn_moved("import_mbt(model, ...)", "model.load_pretrained(...)")
    return model.load_pretrained(checkpoint, streams=streams, source_name=source_name)


def _load_into(model, checkpoint, streams, head, name):
    """One checkpoint into a model (or its named streams); a checkpoint whose tensors have other ranks or shapes
    than the model's mapping reads is refused in one line."""
    try:
        return model.load_pretrained(checkpoint, streams=streams, head=head, source_name=name)
    except (IndexError, ValueError, KeyError) as error:
        if isinstance(error, DataError):
            raise
        raise CheckpointLayoutError(
            f"{name} does not fit {type(model).__name__}: a tensor it needs is missing or "
            f"has another shape ({type(error).__name__}: {first_line(error)})"
        ) from None


def init_from(model, checkpoint, head=None, report_path=None):
    """Loads ``checkpoint`` into any model of this package (its ``load_pretrained``); usable from YAML.

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
        parts = [_load_into(model, path, (stream,), head, str(path)) for stream, path in checkpoint.items()]
        report = ImportReport(" + ".join(part.source for part in parts))
        for part in parts:
            report.loaded += part.loaded
            report.resized += part.resized
            report.ignored += part.ignored
        done = set(report.loaded) | set(report.resized)
        report.initialised = sorted(k for k in model.state_dict() if k not in done and not k.endswith("_index"))
    else:
        report = _load_into(model, checkpoint, None, head, checkpoint if isinstance(checkpoint, str) else "checkpoint")
    if report_path:
        report.save(report_path)
    return report


#: Names version 0.2 imported from here; they live in ``lobes.checkpoint_mapping``.
__getattr__ = moved_names(
    __name__,
    {
        name: "speechbrain_datar.lobes.checkpoint_mapping"
        for name in [
            "adapt_position_embedding",
            "check_checkpoint_file",
            "detect_family",
            "load_weights_only",
            "read_state_dict",
            "resize_table",
        ]
    },
)
