"""Audio-visual evaluation over temporal crops: MBT's test protocol (4 crops, logits averaged).

A clip longer than the model's span (8 s) is covered by ``n_crops`` crops of that
span, spread evenly from its start to its end; each crop is its audio and its
frames. Every crop's embeddings (one per modality) go through the head together,
and MBT's ``ModalityClassifier`` averages the logits of all of them, modalities
and crops alike. A clip no longer than the span is its own crop, repeated.

The recipe's evaluation and the exported model both go through ``crop_starts`` and
``embed_crops``, so ``AudioVisualClassifier.classify_file`` returns what the recipe
measured.
"""

import torch
from torch import nn


def crop_starts(duration, span, n_crops):
    """Start times (seconds) of ``n_crops`` crops of ``span`` seconds over a clip of ``duration`` seconds.

    Evenly spaced from the start to the end (one crop: the centre one); a clip no
    longer than the span (or ``span`` None: the whole clip) gives ``n_crops`` zeros.

    Example
    -------
    >>> crop_starts(10.0, 8.0, 4)
    [0.0, 0.6667, 1.3333, 2.0]
    >>> crop_starts(10.0, 8.0, 1), crop_starts(5.0, 8.0, 2)
    ([1.0], [0.0, 0.0])
    """
    n_crops = int(n_crops)
    if n_crops < 1:
        raise ValueError(f"n_crops must be positive, got {n_crops}")
    room = 0.0 if span is None else max(0.0, float(duration) - float(span))
    if n_crops == 1:
        return [round(room / 2, 4)]
    return [round(room * i / (n_crops - 1), 4) for i in range(n_crops)]


def crop_waveforms(wavs, lengths, starts, span):
    """Cuts ``span`` samples from each start of each waveform.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[batch, samples]``.
    lengths : torch.Tensor or None
        Relative lengths.
    starts : torch.Tensor
        ``[batch, n_crops]`` start samples.
    span : int
        Samples per crop.

    Returns
    -------
    crops : torch.Tensor
        ``[batch * n_crops, min(span, samples)]``, zero past each clip's end.
    lengths : torch.Tensor
        Relative lengths of the crops.

    Example
    -------
    >>> crops, lens = crop_waveforms(torch.arange(10.0)[None], torch.ones(1), torch.tensor([[0, 6]]), 5)
    >>> crops.tolist(), lens.tolist()
    ([[0.0, 1.0, 2.0, 3.0, 4.0], [6.0, 7.0, 8.0, 9.0, 0.0]], [1.0, 0.800000011920929])
    """
    batch, samples = wavs.shape
    width = min(int(span), samples)
    valid = torch.full((batch,), samples, device=wavs.device) if lengths is None else torch.round(
        lengths.to(wavs.device) * samples).long()
    crops = wavs.new_zeros(batch, starts.shape[1], width)
    kept = torch.zeros(batch, starts.shape[1], dtype=torch.long)
    for b in range(batch):
        for c, start in enumerate(starts[b].tolist()):
            piece = wavs[b, start : min(start + width, int(valid[b]))]
            crops[b, c, : piece.shape[0]] = piece
            kept[b, c] = max(1, piece.shape[0])
    return crops.flatten(0, 1), (kept.flatten().float() / width).to(wavs.device)


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
        return embed_crops(self.encoder, self.audio_features, wavs, lengths, frames, starts, self.sample_rate,
                           self.span_seconds)
