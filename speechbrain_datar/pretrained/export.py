"""Export a trained classifier as a self-contained folder for SpeechBrain's inference interfaces.

The folder holds ``hyperparams.yaml`` (the inference graph: features and normalisation computed window by
window inside the sliding-window embedding, or crop by crop for audio-visual models, score averaging, label
encoders), ``embedding_model.ckpt``, ``classifier.ckpt`` and ``label_encoder*.ckpt``. It loads offline with
``EncoderClassifier.from_hparams(source=folder)`` (one head of exclusive classes) or the interface its
first line names, and has the layout of a SpeechBrain model on a model hub.

The evaluation protocol of the recipe (``SlidingWindows`` or ``TemporalCrops``, the hparams'
``evaluation``) writes the exported model's pipeline, so the export classifies as the recipe evaluated.
"""

import json
import os

import torch
import yaml

from speechbrain_datar.dataio.labels import label_encoder_name
from speechbrain_datar.deprecation import moved_names
from speechbrain_datar.inference.sliding_window import SlidingWindows
from speechbrain_datar.inference.temporal_crops import TemporalCrops
from speechbrain_datar.nnet.layers import unwrap_module

INFERENCE_TEMPLATE = """# Inference hyperparameters written by speechbrain_datar.pretrained.export.
# Load with: {interface}.from_hparams(source=<this folder>)

sample_rate: {sample_rate}
label_keys: {label_keys}

audio_normalizer: !new:speechbrain_datar.dataio.audio.SoxrAudioNormalizer
    sample_rate: !ref <sample_rate>

features: !new:{feature_class}
{features}
normalizer: !new:speechbrain_datar.dataio.normalization.DatasetNormalization
    mean: {mean!r}
    std: {std!r}

encoder: !new:{encoder_class}
{encoder}
head: !new:{head_class}
{head}
{pipeline}
{label_encoders}
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <encoder>
        classifier: !ref <head>
{loadables}
"""


def _indented_yaml(mapping, indent=4):
    text = yaml.safe_dump(mapping, default_flow_style=None, sort_keys=False).rstrip("\n")
    return "\n".join(" " * indent + line for line in text.splitlines()) + "\n"


def _class_path(module):
    return f"{type(module).__module__}.{type(module).__qualname__}"


def export_classifier(
    folder,
    encoder,
    head,
    normalizer,
    label_encoders,
    feature_options,
    window_frames=None,
    hop_frames=None,
    sample_rate=16000,
    extra_files=None,
    max_windows=8,
    audio_visual=None,
    threshold=0.5,
    feature_class="speechbrain.lobes.features.Fbank",
    evaluation=None,
    precision="auto",
):
    """Writes the inference folder.

    Arguments
    ---------
    folder : str
        Destination (created).
    encoder : torch.nn.Module
        Trained encoder with ``init_kwargs`` (any encoder of ``lobes.models``).
    head : torch.nn.Module
        Trained head of ``nnet.classifier``.
    normalizer : DatasetNormalization
        Normalisation with the training statistics.
    label_encoders : dict
        ``{key: CategoricalEncoder}``, one per output of the head.
    feature_options : dict
        Keyword arguments of the features used in training (SpeechBrain's ``Fbank`` unless
        ``feature_class`` says otherwise).
    window_frames, hop_frames, max_windows, audio_visual
        Without ``evaluation``: the sliding windows (frames; windows per encoder call), or for an
        audio-visual encoder the crops (``clip_seconds``, ``eval_crops``, ``frames``, ``frame_norm``).
    sample_rate : int
        Rate the model expects; other rates are resampled on load.
    extra_files : dict or None
        ``{name: dict}`` written as JSON beside the model (e.g. test metrics, class names).
    threshold : float
        For a multi-label head (independent classes): the probability a class needs to be
        returned as a tag; the folder then serves ``AudioTagger``.
    feature_class : str
        Import path of the class the exported model computes its features with.
    evaluation : SlidingWindows or TemporalCrops or None
        The recipe's evaluation protocol (default: made from the arguments above).
    precision : str
        ``"auto"`` (default: bf16 where the device multiplies it natively, else fp32), ``"fp32"``, ``"bf16"``
        or ``"int8"``: what the exported audio model's encoder runs in
        (``speechbrain_datar.inference.precision``); loading may choose another
        (``from_hparams(..., precision=...)``). The weights are saved in float32 whatever it is.

    Returns
    -------
    str
        The folder.
    """
    encoder, head = unwrap_module(encoder), unwrap_module(head)
    if evaluation is None:
        evaluation = _default_evaluation(window_frames, hop_frames, max_windows, audio_visual, sample_rate)
    os.makedirs(folder, exist_ok=True)
    names, blocks = _write_label_encoders(folder, label_encoders)
    if head.multi_label:
        blocks.append(f"threshold: {float(threshold)}  # probability a class needs to be a tag\n")
    min_samples = int(round(sample_rate * feature_options.get("win_length", 25) / 1000.0))
    text = INFERENCE_TEMPLATE.format(
        interface=evaluation.interface(head),
        label_keys=list(label_encoders),
        sample_rate=int(sample_rate),
        feature_class=feature_class,
        features=_indented_yaml(feature_options),
        mean=float(normalizer.mean),
        std=float(normalizer.std),
        encoder_class=_class_path(encoder),
        encoder=_indented_yaml(encoder.init_kwargs),
        head_class=_class_path(head),
        head=_indented_yaml(head.init_kwargs),
        pipeline=evaluation.exported_pipeline(encoder, min_samples, precision),
        label_encoders="".join(blocks),
        loadables="".join(f"        {n}: !ref <{n}>\n" for n in names),
    )
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as f:
        f.write(text)
    torch.save(encoder.state_dict(), os.path.join(folder, "embedding_model.ckpt"))
    torch.save(head.state_dict(), os.path.join(folder, "classifier.ckpt"))
    for name, content in (extra_files or {}).items():
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f, indent=2)
    return folder


def _default_evaluation(window_frames, hop_frames, max_windows, audio_visual, sample_rate):
    """The evaluation protocol an export without one gets: temporal crops for an audio-visual encoder
    (``audio_visual``: ``clip_seconds``, ``eval_crops``, ``frames``, ``frame_norm``), else sliding windows."""
    if audio_visual is None:
        return SlidingWindows(window_frames, hop_frames, max_windows)
    return TemporalCrops(
        audio_visual["clip_seconds"],
        audio_visual["eval_crops"],
        sample_rate,
        audio_visual["frames"],
        audio_visual["frame_norm"],
    )


def _write_label_encoders(folder, label_encoders):
    """Saves each head's label encoder beside the model; returns their names and their hparams entries (each
    checks, when loaded, that the encoder has the classes the head was trained for)."""
    names, blocks = [], []
    for key, label_encoder in label_encoders.items():
        name = label_encoder_name(key)
        names.append(name)
        blocks.append(
            f"{name}: !apply:speechbrain_datar.dataio.labels.expecting\n    n_classes: {len(label_encoder)}\n"
        )
        label_encoder.save(os.path.join(folder, f"{name}.ckpt"))
    return names, blocks


def export_recipe_model(hparams, modules, label_encoders, extra_files=None):
    """Exports what a recipe trained into ``hparams["export_folder"]``: the modules, the features, the
    normalisation and the evaluation protocol of the hparams.

    Arguments
    ---------
    hparams : dict
        The recipe's hparams (``export_folder``, ``compute_features``, ``mean_var_norm``, ``evaluation``,
        ``sample_rate``, ``tagging_threshold``).
    modules : dict
        The trained ``embedding_model`` and ``classifier`` (the Brain's modules).
    label_encoders : dict
        ``{key: CategoricalEncoder}``.
    extra_files : dict or None
        ``{name: dict}`` written as JSON beside the model.
    """
    features = hparams["compute_features"]
    return export_classifier(
        hparams["export_folder"],
        encoder=modules["embedding_model"],
        head=modules["classifier"],
        normalizer=hparams["mean_var_norm"],
        label_encoders=label_encoders,
        feature_options=features.options,
        feature_class=features.exported_class,
        sample_rate=hparams["sample_rate"],
        extra_files=extra_files,
        threshold=hparams["tagging_threshold"],
        evaluation=hparams["evaluation"],
        precision=hparams.get("export_precision", "auto"),
    )


#: Version 0.2 imported the exported pipelines' templates from here.
__getattr__ = moved_names(
    __name__,
    {
        "AUDIO_PIPELINE": "speechbrain_datar.inference.sliding_window",
        "AUDIO_VISUAL_PIPELINE": "speechbrain_datar.inference.temporal_crops",
    },
)
