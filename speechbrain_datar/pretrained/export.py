"""Export a trained classifier as a self-contained folder for SpeechBrain's inference interfaces.

The folder holds ``hyperparams.yaml`` (the inference graph: features and
normalisation computed window by window inside the sliding-window embedding,
score averaging, label encoder),
``embedding_model.ckpt``, ``classifier.ckpt`` and ``label_encoder.ckpt``. It loads
offline with ``EncoderClassifier.from_hparams(source=folder)`` and has the layout
of a SpeechBrain model on a model hub.
"""

import json
import os

import torch
import yaml

from speechbrain_datar.dataio.labels import label_encoder_name
from speechbrain_datar.nnet.classifier import is_multi_label
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
{pipeline}
{label_encoders}
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <encoder>
        classifier: !ref <head>
{loadables}
"""

#: Audio models: sliding windows over the file, window scores averaged.
AUDIO_PIPELINE = """
# Features are computed window by window by embedding_model, so the pipeline's first two steps pass
# the waveform on unchanged.
compute_features: !new:speechbrain_datar.inference.sliding_window.Unchanged
mean_var_norm: !new:speechbrain_datar.inference.sliding_window.Unchanged

# Clips longer than the window are embedded window by window, {max_windows} windows at a time, so that
# memory does not grow with the file; window scores are averaged.
embedding_model: !new:speechbrain_datar.inference.sliding_window.SlidingWindowEmbedding
    encoder: !ref <encoder>
    window_frames: {window_frames}
    hop_frames: {hop_frames}
    features: !ref <features>
    normalizer: !ref <normalizer>
    max_windows: {max_windows}
    min_samples: {min_samples}

head: !new:{head_class}
{head}
classifier: !new:speechbrain_datar.inference.sliding_window.WindowScoreAverage
    classifier: !ref <head>
    windows: !ref <embedding_model>

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
"""

#: Audio-visual models: temporal crops of the training span, sound and frames, logits averaged.
AUDIO_VISUAL_PIPELINE = """
modalities: {modalities}
clip_seconds: {clip_seconds}
eval_crops: {eval_crops}
frames:
{frames}
frame_norm: !new:speechbrain_datar.dataio.frames.FrameNormalization
    mean: {frame_mean}
    std: {frame_std}

embedding_model: !new:speechbrain_datar.inference.temporal_crops.CropEmbedding
    encoder: !ref <encoder>
    features: !ref <features>
    normalizer: !ref <normalizer>
    frame_norm: !ref <frame_norm>
    sample_rate: !ref <sample_rate>
    span_seconds: !ref <clip_seconds>

# One head for every crop's and every modality's embedding; it averages their logits.
head: !new:{head_class}
{head}
modules:
    embedding_model: !ref <embedding_model>
    classifier: !ref <head>
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
    window_frames,
    hop_frames,
    sample_rate=16000,
    extra_files=None,
    max_windows=8,
    audio_visual=None,
    threshold=0.5,
    feature_class="speechbrain.lobes.features.Fbank",
):
    """Writes the inference folder.

    Arguments
    ---------
    folder : str
        Destination (created).
    encoder : torch.nn.Module
        Trained encoder with ``init_kwargs`` (``DATAR`` or ``AST``).
    head : torch.nn.Module
        Trained ``Classifier`` or ``MultiHeadClassifier``.
    normalizer : DatasetNormalization
        Normalisation with the training statistics.
    label_encoders : dict
        ``{"label": CategoricalEncoder}``; several keys for several heads.
    feature_options : dict
        Keyword arguments of the features used in training (SpeechBrain's ``Fbank`` unless
        ``feature_class`` says otherwise).
    window_frames, hop_frames : int
        Sliding-window layout for long clips.
    sample_rate : int
        Rate the model expects; other rates are resampled on load.
    extra_files : dict or None
        ``{name: dict}`` written as JSON beside the model (e.g. test metrics, class names).
    max_windows : int
        Windows embedded per encoder call at most (bounds memory on long files).
    audio_visual : dict or None
        For an audio-visual encoder (``MBT``, ``LateFusion``): ``clip_seconds``, ``eval_crops``,
        ``frames`` (``n_frames``, ``size``, ``sampling``, ``stride``) and ``frame_norm``; the folder
        then serves ``AudioVisualClassifier``, which reads video files' frames too.
    threshold : float
        For a multi-label head (independent classes): the probability a class needs to be
        returned as a tag; the folder then serves ``AudioTagger``.

    Returns
    -------
    str
        The folder.
    """
    encoder, head = unwrap_module(encoder), unwrap_module(head)
    for module in (encoder, head):
        if not hasattr(module, "init_kwargs"):
            raise TypeError(f"{type(module).__name__} does not record its constructor arguments")
    os.makedirs(folder, exist_ok=True)
    encoder_names = []
    blocks = []
    for key, label_encoder in label_encoders.items():
        name = label_encoder_name(key)
        encoder_names.append(name)
        blocks.append(
            f"{name}: !apply:speechbrain_datar.dataio.labels.expecting\n    n_classes: {len(label_encoder)}\n"
        )
        label_encoder.save(os.path.join(folder, f"{name}.ckpt"))
    single = list(label_encoders) == ["label"]
    head_yaml = dict(head_class=_class_path(head), head=_indented_yaml(head.init_kwargs))
    multi_label = is_multi_label(head)
    if multi_label:
        blocks.append(f"threshold: {float(threshold)}  # probability a class needs to be a tag\n")
    if audio_visual is None:
        interface = "EncoderClassifier" if single else "speechbrain_datar.inference.interfaces.MultiHeadAudioClassifier"
        if multi_label:
            interface = "speechbrain_datar.inference.interfaces.AudioTagger"
        pipeline = AUDIO_PIPELINE.format(
            window_frames=int(window_frames), hop_frames=int(hop_frames), max_windows=int(max_windows),
            min_samples=int(round(sample_rate * feature_options.get("win_length", 25) / 1000.0)), **head_yaml,
        )
    else:
        interface = "speechbrain_datar.inference.interfaces.AudioVisualClassifier"
        frame_norm = audio_visual["frame_norm"]
        pipeline = AUDIO_VISUAL_PIPELINE.format(
            modalities=list(encoder.modalities), clip_seconds=float(audio_visual["clip_seconds"]),
            eval_crops=int(audio_visual["eval_crops"]), frames=_indented_yaml(audio_visual["frames"]),
            frame_mean=frame_norm.mean.flatten().tolist(), frame_std=frame_norm.std.flatten().tolist(), **head_yaml,
        )
    text = INFERENCE_TEMPLATE.format(
        interface=interface,
        label_keys=list(label_encoders),
        sample_rate=int(sample_rate),
        feature_class=feature_class,
        features=_indented_yaml(feature_options),
        mean=float(normalizer.mean),
        std=float(normalizer.std),
        encoder_class=_class_path(encoder),
        encoder=_indented_yaml(encoder.init_kwargs),
        pipeline=pipeline,
        label_encoders="".join(blocks),
        loadables="".join(f"        {n}: !ref <{n}>\n" for n in encoder_names),
    )
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as f:
        f.write(text)
    torch.save(encoder.state_dict(), os.path.join(folder, "embedding_model.ckpt"))
    torch.save(head.state_dict(), os.path.join(folder, "classifier.ckpt"))
    for name, content in (extra_files or {}).items():
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f, indent=2)
    return folder
