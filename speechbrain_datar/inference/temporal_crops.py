"""Audio-visual evaluation over temporal crops: MBT's test protocol (4 crops, logits averaged).

A clip longer than the model's span (8 s) is covered by ``n_crops`` crops of that
span, spread evenly from its start to its end; each crop is its audio and its
frames. Every crop's embeddings (one per modality) go through the head together,
and MBT's ``ModalityClassifier`` averages the logits of all of them, modalities
and crops alike. A clip no longer than the span is its own crop, repeated.

The recipe's evaluation and the exported model both go through ``TemporalCrops`` (``crop_starts`` and
``embed_crops``), so ``AudioVisualClassifier.classify_file`` returns what the recipe measured. The
crops are cut in ``dataio.crops``.
"""

import torch  # noqa: F401 (used by the doctests)
from torch import nn

from speechbrain_datar.dataio.crops import crop_starts, crop_waveforms

__all__ = ["CropEmbedding", "TemporalCrops", "crop_starts", "crop_waveforms", "embed_crops"]


def embed_crops(encoder, audio_features, wavs, lengths, frames, starts, sample_rate, span_seconds):
    """Embeds every crop of every clip: ``[batch, n_crops * M, dim]`` for a head that averages its rows.

    Arguments
    ---------
    encoder : callable
        ``encoder(feats, lengths, frames=...) -> [n, M, dim]`` (``MBT``, ``LateFusion``).
    audio_features : callable
        ``audio_features(wavs, lengths) -> [n, time, n_mels]`` normalised features.
    wavs : torch.Tensor or None
        ``[batch, samples]`` whole clips (``None``: no sound).
    lengths : torch.Tensor or None
        Relative lengths of ``wavs``.
    frames : torch.Tensor or None
        ``[batch, n_crops, n_frames, 3, H, W]`` normalised frames of each crop (``None``: no picture).
    starts : torch.Tensor
        ``[batch, n_crops]`` crop starts in seconds.
    sample_rate : int
        Of ``wavs``.
    span_seconds : float
        Seconds per crop.
    """
    batch, n_crops = starts.shape
    feats = crop_lengths = None
    if wavs is not None:
        first = torch.round(starts.double() * sample_rate).long()
        crops, crop_lengths = crop_waveforms(wavs, lengths, first, int(round(span_seconds * sample_rate)))
        feats = audio_features(crops, crop_lengths)
    if frames is not None:
        frames = frames.flatten(0, 1)
    embeddings = encoder(feats, crop_lengths, frames=frames)  # batch * n_crops, M, dim
    return embeddings.reshape(batch, n_crops * embeddings.shape[1], embeddings.shape[2])


class CropEmbedding(nn.Module):
    """The exported audio-visual model's embedding: waveforms and uint8 frames of the crops in, rows for
    the head out (``embed_crops``), with the features and the normalisations of training inside.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``MBT`` or ``LateFusion``.
    features : torch.nn.Module
        SpeechBrain's ``Fbank`` with the recipe's options.
    normalizer : torch.nn.Module
        Feature normalisation with the training statistics.
    frame_norm : torch.nn.Module
        Frame normalisation (``FrameNormalization``).
    sample_rate : int
        Of the waveforms.
    span_seconds : float
        Seconds per crop (the training span).

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain_datar.dataio.frames import FrameNormalization
    >>> from speechbrain_datar.dataio.normalization import DatasetNormalization
    >>> from speechbrain_datar.lobes.models.mbt import MBT
    >>> mbt = MBT("micro", n_mels=32, audio_frames=101, n_frames=2, image_size=32)
    >>> model = CropEmbedding(mbt, Fbank(n_mels=32), DatasetNormalization(0.0, 1.0), FrameNormalization(), 16000, 1.0)
    >>> frames = torch.randint(0, 256, (1, 4, 2, 3, 32, 32), dtype=torch.uint8)
    >>> model.eval()(torch.randn(1, 40000), torch.ones(1), frames, torch.tensor([[0.0, 0.5, 1.0, 1.5]])).shape
    torch.Size([1, 8, 32])
    """

    def __init__(self, encoder, features, normalizer, frame_norm, sample_rate, span_seconds):
        super().__init__()
        self.encoder, self.features, self.normalizer, self.frame_norm = encoder, features, normalizer, frame_norm
        self.sample_rate, self.span_seconds = int(sample_rate), float(span_seconds)

    def audio_features(self, wavs, lengths):
        """Normalised features of waveforms."""
        return self.normalizer(self.features(wavs), lengths)

    def forward(self, wavs, lengths, frames, starts):
        """``[batch, n_crops * M, dim]``; ``wavs`` or ``frames`` may be ``None`` (a file without sound or picture)."""
        frames = None if frames is None else self.frame_norm(frames)
        return embed_crops(
            self.encoder, self.audio_features, wavs, lengths, frames, starts, self.sample_rate, self.span_seconds
        )


class TemporalCrops:
    """The evaluation of audio-visual models (MBT's protocol): ``n_crops`` crops of ``span_seconds`` over
    each clip, each its sound and its frames, every crop's and modality's logits averaged by the head. The
    recipe's validation and test and the exported model (``CropEmbedding``) both use it.

    Arguments
    ---------
    span_seconds : float
        Seconds per crop (the training span).
    n_crops : int
        Crops per clip.
    sample_rate : int
        Of the waveforms.
    frames : dict
        Which frames a crop gives: ``n_frames``, ``size``, ``sampling``, ``stride``.
    frame_norm : torch.nn.Module
        The frames' normalisation (``FrameNormalization``).
    """

    def __init__(self, span_seconds, n_crops, sample_rate, frames, frame_norm):
        self.span_seconds, self.n_crops, self.sample_rate = float(span_seconds), int(n_crops), int(sample_rate)
        self.frames, self.frame_norm = dict(frames), frame_norm

    def scores(self, encoder, head, audio_features, wavs, lengths, frames=None, crop_starts=None, resolution=None):
        """``{name: log_probs [batch, 1, C]}`` of whole clips (``frames``: normalised, ``[batch, n_crops, n_frames, 3, H, W]``;
        ``crop_starts``: ``[batch, n_crops]`` seconds, as the data pipeline gives them)."""
        return head(
            embed_crops(
                encoder, audio_features, wavs, lengths, frames, crop_starts, self.sample_rate, self.span_seconds
            )
        )

    def interface(self, head):
        """The interface that serves the exported model."""
        return "speechbrain_datar.inference.interfaces.AudioVisualClassifier"

    def exported_pipeline(self, encoder, min_samples, precision="auto"):
        """The inference hparams of the exported model's ``embedding_model`` and ``classifier`` (audio-visual
        models are exported in fp32 only)."""
        if precision not in ("fp32", "auto"):  # auto: the best of fp32 and bf16, which is fp32 here
            raise ValueError(f"audio-visual models are exported in fp32 only, not {precision!r}")
        frames = "".join(f"    {key}: {value}\n" for key, value in self.frames.items())
        return AUDIO_VISUAL_PIPELINE.format(
            modalities=list(encoder.modalities),
            clip_seconds=self.span_seconds,
            eval_crops=self.n_crops,
            frames=frames,
            frame_mean=self.frame_norm.mean.flatten().tolist(),
            frame_std=self.frame_norm.std.flatten().tolist(),
        )


#: The exported audio-visual model: temporal crops of the training span, sound and frames, logits averaged.
AUDIO_VISUAL_PIPELINE = """
modalities: {modalities}
clip_seconds: {clip_seconds}
eval_crops: {eval_crops}
frames:
{frames}frame_norm: !new:speechbrain_datar.dataio.frames.FrameNormalization
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
classifier: !ref <head>

modules:
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
"""
