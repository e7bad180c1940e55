"""Sliding-window classification of clips longer than the training length, in bounded memory.

A clip of ``L`` frames is cut into ``1 + ceil(max(0, L - window) / hop)`` windows
starting every ``hop`` frames (the last one may be shorter). Each window is
embedded and classified, and the class probabilities of a clip's windows are
averaged. A clip no longer than ``window`` is a single window, so its embedding
is the usual ``[batch, 1, dim]``.

Windows go through the encoder a chunk at a time (at most ``max_windows`` per
call), and the exported model computes the features of each chunk from the
waveform itself (exactly the frames the whole file would give), so what a long
file costs in memory beyond its waveform is one chunk and a ``dim``-vector per window.

The recipe's evaluation and the exported model both go through these functions,
so ``EncoderClassifier.classify_file`` returns what the recipe measured.
"""

import copy

import torch
from torch import nn
from tqdm import tqdm

from speechbrain_datar.inference.adapters import SeveralHeads, classifier_module_output
from speechbrain_datar.inference.precision import PrecisionRunner, check_precision
from speechbrain_datar.nnet.masking import relative_to_absolute_lengths

#: A file that needs this many encoder calls or more shows a progress bar (about 13 minutes at 8 windows of
#: 10 s every 5 s).
PROGRESS_AFTER_CHUNKS = 20


def windows_per_clip(frames, window, hop):
    """Number of windows of each clip.

    Example
    -------
    >>> windows_per_clip(torch.tensor([50, 100, 101, 260]), window=100, hop=50)
    tensor([1, 1, 2, 5])
    """
    extra = torch.clamp(frames - window, min=0)
    return 1 + torch.div(extra + hop - 1, hop, rounding_mode="floor")


class FeatureFrames:
    """Frames of a batch of precomputed features ``[batch, time, n_mels]``, zero past the end.

    Example
    -------
    >>> FeatureFrames(torch.ones(2, 5, 3)).frames(3, 7)[0, :, 0]
    tensor([1., 1., 0., 0.])
    """

    def __init__(self, feats):
        self.feats = feats
        self.batch, self.n_frames = feats.shape[:2]
        self.device = feats.device

    def frames(self, start, stop):
        """Frames ``[start, stop)`` of every clip, ``[batch, stop - start, n_mels]``."""
        part = self.feats[:, start:stop]
        if part.shape[1] < stop - start:
            part = nn.functional.pad(part, (0, 0, 0, stop - start - part.shape[1]))
        return part


class SampleSpans:
    """The samples behind frames of a centred STFT: frame ``i`` covers samples ``[i*hop - half, i*hop + half)``,
    zeros outside the waveform.

    Arguments
    ---------
    wavs : torch.Tensor or StreamedAudio
        ``[batch, samples]``, or a source of samples (``read(first, last)``, ``n_samples``,
        ``batch``) such as ``speechbrain_datar.dataio.streaming.StreamedAudio``, which decodes
        a file as the spans are asked for.
    hop, half : int
        The STFT's hop and half its ``n_fft``, in samples.
    device : str or torch.device or None
        Where a source's samples go (a tensor's stay where they are).

    A span holding NaN or infinite samples raises ``ValueError``.

    Example
    -------
    >>> spans = SampleSpans(torch.arange(1.0, 11.0)[None], hop=4, half=2)
    >>> spans.n_frames, spans.span(0, 2).tolist()
    (3, [[0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    """

    def __init__(self, wavs, hop, half, device=None):
        streamed = not isinstance(wavs, torch.Tensor)
        self.hop, self.half = int(hop), int(half)
        self.n_samples = wavs.n_samples if streamed else wavs.shape[1]
        self.batch = wavs.batch if streamed else wavs.shape[0]
        self.n_frames = self.n_samples // self.hop + 1
        self.device = torch.device(device or "cpu") if streamed else wavs.device
        self.samples = (
            (lambda lo, hi: wavs.read(lo, hi).to(self.device)) if streamed else (lambda lo, hi: wavs[:, lo:hi])
        )

    def span(self, start, stop):
        """The samples of frames ``[start, stop)``: ``[batch, (stop - 1 - start) * hop + 2 * half]``."""
        first, last = start * self.hop - self.half, (stop - 1) * self.hop + self.half
        span = torch.zeros(self.batch, last - first, device=self.device)
        lo, hi = max(first, 0), min(last, self.n_samples)
        if hi > lo:
            span[:, lo - first : hi - first] = self.samples(lo, hi)
        # Checked span by span: a whole-file isfinite would build temporaries the size of the file.
        if not bool(torch.isfinite(span).all()):
            raise ValueError("the audio holds NaN or infinite samples")
        return span


class WaveformFrames:
    """Normalised fbank frames of a batch of waveforms, computed only for the frames asked for.

    Frame ``i`` of a centred STFT covers samples ``[i*hop - n_fft/2, i*hop + n_fft/2)``
    (zeros outside the waveform), so computing frames ``[a, b)`` from that span with
    an uncentred copy of ``features`` gives exactly the frames of the whole waveform.

    Arguments
    ---------
    wavs : torch.Tensor or StreamedAudio
        ``[batch, samples]``, or a source of samples (see ``SampleSpans``).
    features : speechbrain.lobes.features.Fbank
        The feature extractor (its STFT must be centred, SpeechBrain's default).
    normalizer : callable or None
        Applied to each chunk of features (``normalizer(feats, lengths)``).
    device : str or torch.device or None
        Where a source's samples go (a tensor's stay where they are).

    A chunk holding NaN or infinite samples raises ``ValueError``.

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> fbank, wavs = Fbank(n_mels=20), torch.randn(2, 8000)
    >>> part = WaveformFrames(wavs, fbank).frames(7, 30)
    >>> torch.allclose(part, fbank(wavs)[:, 7:30], atol=1e-5)
    True
    """

    def __init__(self, wavs, features, normalizer=None, device=None):
        stft = features.compute_STFT
        self.spans = SampleSpans(wavs, stft.hop_length, stft.n_fft // 2, device)
        self.batch, self.n_frames, self.device = self.spans.batch, self.spans.n_frames, self.spans.device
        self.normalizer = normalizer
        self.uncentred = copy.deepcopy(features)
        self.uncentred.compute_STFT.center = False

    def frames(self, start, stop):
        """Frames ``[start, stop)`` of every waveform, ``[batch, stop - start, n_mels]``."""
        feats = self.uncentred(self.spans.span(start, stop))
        if self.normalizer is not None:
            feats = self.normalizer(feats, torch.ones(self.batch, device=feats.device))
        return feats


def sliding_window_embeddings(encoder, feats, lengths, window, hop, max_windows=None):
    """Embeds every window of every clip, at most ``max_windows`` windows per encoder call.

    Arguments
    ---------
    encoder : callable
        ``encoder(feats, lengths) -> [n, 1, dim]``.
    feats : torch.Tensor or FeatureFrames or WaveformFrames
        ``[batch, time, n_mels]`` features, or a source of their frames.
    lengths : torch.Tensor or None
        Relative lengths.
    window, hop : int
        Window length and hop in frames.
    max_windows : int or None
        Windows per encoder call at most (``None``: all of them at once). Clips
        of one window always go through together, as a batch would.

    Returns
    -------
    embeddings : torch.Tensor
        ``[batch, n_windows, dim]``; zero for windows a clip does not have.
    valid : torch.Tensor
        Boolean ``[batch, n_windows]``.

    Example
    -------
    >>> encoder = lambda x, l: x.mean(dim=1, keepdim=True)
    >>> emb, valid = sliding_window_embeddings(encoder, torch.ones(2, 30, 4), torch.tensor([1.0, 0.3]), 10, 10, 1)
    >>> emb.shape, valid.tolist()
    (torch.Size([2, 3, 4]), [[True, True, True], [True, False, False]])
    """
    source = FeatureFrames(feats) if isinstance(feats, torch.Tensor) else feats
    batch, time, device = source.batch, source.n_frames, source.device
    frames = relative_to_absolute_lengths(lengths, time)
    frames = torch.full((batch,), time, dtype=torch.long) if frames is None else frames
    frames = frames.to(device)
    span = min(window, time)
    n_windows = int(windows_per_clip(torch.tensor(time), window, hop))
    if n_windows == 1:
        return encoder(source.frames(0, time), lengths), torch.ones(batch, 1, dtype=torch.bool, device=device)
    valid = torch.arange(n_windows, device=device)[None, :] < windows_per_clip(frames, window, hop)[:, None]
    starts = torch.arange(n_windows, device=device) * hop
    window_frames = torch.clamp(frames[:, None] - starts[None, :], min=1, max=span)
    step = n_windows if not max_windows else max(1, int(max_windows) // batch)
    out = None
    chunks = range(0, n_windows, step)
    for first in tqdm(
        chunks, desc="windows", unit="chunk", disable=len(chunks) < PROGRESS_AFTER_CHUNKS, dynamic_ncols=True
    ):
        last = min(first + step, n_windows)
        cuts = source.frames(first * hop, (last - 1) * hop + span).unfold(1, span, hop).permute(0, 1, 3, 2)
        chosen = valid[:, first:last]
        if not bool(chosen.any()):
            continue
        embedded = encoder(cuts[chosen], window_frames[:, first:last][chosen].float() / span)  # n, 1, dim
        if out is None:
            out = embedded.new_zeros(batch, n_windows, embedded.shape[-1])
        out[:, first:last][chosen] = embedded[:, 0]
    return out, valid


def average_window_scores(head, embeddings, valid=None):
    """Classifies each window and averages the class probabilities over a clip's windows.

    Arguments
    ---------
    head : callable
        A head of ``nnet.classifier``: ``[batch, n_windows, dim]`` -> ``{name: log-probabilities [batch,
        n_windows, C]}``.
    embeddings : torch.Tensor
        ``[batch, n_windows, dim]`` (``WindowEmbeddings`` carry their own ``valid``).
    valid : torch.Tensor or None
        Boolean ``[batch, n_windows]``; ``None``: the embeddings' own, or every window.

    Returns
    -------
    dict
        ``{name: log of the mean probability [batch, 1, C]}``.

    Example
    -------
    >>> head = lambda x: {"label": torch.log_softmax(x, dim=-1)}
    >>> emb = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])
    >>> average_window_scores(head, emb, torch.tensor([[True, False]]))["label"].exp()
    tensor([[[0.5000, 0.5000]]])
    """
    if valid is None and isinstance(embeddings, WindowEmbeddings):
        valid = embeddings.valid

    def average(log_probs):
        """Log of the valid windows' mean probabilities, ``[batch, 1, C]``."""
        if log_probs.shape[1] == 1:
            return log_probs
        weights = torch.ones(log_probs.shape[:2], device=log_probs.device) if valid is None else valid.float()
        weights = weights / weights.sum(dim=1, keepdim=True)
        mean = (log_probs.exp() * weights.unsqueeze(-1)).sum(dim=1, keepdim=True)
        return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))

    return {name: average(value) for name, value in head(embeddings).items()}


def _plain(value):
    """``value`` with every ``WindowEmbeddings`` in it (tuples and lists too) as a plain tensor."""
    if isinstance(value, WindowEmbeddings):
        return value.as_subclass(torch.Tensor)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    return value


class WindowEmbeddings(torch.Tensor):
    """Embeddings of sliding windows ``[batch, n_windows, dim]`` that carry which windows each clip has
    (``valid``, boolean ``[batch, n_windows]``), from ``SlidingWindowEmbedding`` to ``WindowScoreAverage``
    through SpeechBrain's ``EncoderClassifier``, which passes one tensor between them. Any operation on
    them gives a plain tensor.

    Example
    -------
    >>> emb = WindowEmbeddings.of(torch.zeros(1, 2, 4), torch.tensor([[True, False]]))
    >>> emb.valid.tolist(), type(emb * 2).__name__
    ([[True, False]], 'Tensor')
    """

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """Any operation gives plain tensors: only the embeddings themselves carry ``valid`` (an operation that
        gives them back unchanged, as ``.to()`` their own device does, gives them with it)."""
        result = super().__torch_function__(func, types, args, kwargs or {})
        if args and result is args[0]:
            return result
        return _plain(result)

    @staticmethod
    def of(embeddings, valid):
        """``embeddings`` with their windows' ``valid``."""
        out = embeddings.as_subclass(WindowEmbeddings)
        out.valid = valid
        return out


#: Version 0.2's name of ``SeveralHeads``.
HeadScores = SeveralHeads


class Unchanged(nn.Module):
    """Returns its first input: the exported model's ``compute_features`` and ``mean_var_norm``, whose work
    ``SlidingWindowEmbedding`` does window by window.

    Example
    -------
    >>> x = torch.randn(2, 5)
    >>> Unchanged()(x, torch.ones(2)) is x
    True
    """

    def forward(self, x, *args):
        """``x``, as it came."""
        return x


class SlidingWindowEmbedding(nn.Module):
    """An ``embedding_model`` for ``EncoderClassifier`` that embeds long clips window by window.

    Returns ``WindowEmbeddings`` ``[batch, n_windows, dim]`` (``[batch, 1, dim]`` for clips up to one
    window) that carry which windows each clip has, for ``WindowScoreAverage``.

    Arguments
    ---------
    encoder : torch.nn.Module
        The encoder, e.g. ``DATAR``.
    window_frames, hop_frames : int
        Window and hop in frames.
    features : torch.nn.Module or None
        With a feature extractor (SpeechBrain's ``Fbank``), the input is waveforms
        ``[batch, samples]`` and each chunk of windows gets its features computed
        on its own; without, the input is features ``[batch, time, n_mels]``.
    normalizer : torch.nn.Module or None
        Normalisation of the features (with ``features``).
    max_windows : int or None
        Windows per encoder call at most (``forward`` may ask for another number).
    min_samples : int
        With ``features``: shorter (or empty) waveforms are refused with an error.
    precision : str
        ``"fp32"`` (default), ``"bf16"`` or ``"int8"``: what the encoder runs in outside training
        (``speechbrain_datar.inference.precision``; a device that cannot falls back to fp32, logged).

    Example
    -------
    >>> from speechbrain_datar.lobes.models.datar import DATAR
    >>> model = SlidingWindowEmbedding(DATAR("micro", n_mels=32), window_frames=64, hop_frames=32).eval()
    >>> out = model(torch.randn(2, 150, 32), torch.tensor([1.0, 0.4]))
    >>> out.shape, out.valid.sum(dim=1).tolist()
    (torch.Size([2, 4, 128]), [4, 1])
    """

    def __init__(
        self,
        encoder,
        window_frames,
        hop_frames,
        features=None,
        normalizer=None,
        max_windows=None,
        min_samples=1,
        precision="auto",
    ):
        super().__init__()
        if window_frames < 1 or hop_frames < 1:
            raise ValueError("window_frames and hop_frames must be positive")
        self.encoder = encoder
        self.runner = PrecisionRunner(encoder, precision)
        self.window_frames, self.hop_frames = int(window_frames), int(hop_frames)
        self.features, self.normalizer = features, normalizer  # waveform input: features per chunk
        self.max_windows, self.min_samples = max_windows, int(min_samples)

    def check_waveforms(self, wavs, lengths):
        """Refuses waveforms a model cannot be asked about: empty or too short (NaN and inf samples are
        refused as their chunks are read)."""
        if not isinstance(wavs, torch.Tensor):  # a stream of samples
            samples = wavs.n_samples
        elif wavs.dim() != 2:
            raise ValueError(f"expected waveforms [batch, samples], got shape {tuple(wavs.shape)}")
        else:
            samples = wavs.shape[1] if lengths is None else torch.round(lengths * wavs.shape[1]).min().item()
        if samples < self.min_samples:
            raise ValueError(
                f"audio of {int(samples)} samples is too short to classify: "
                f"at least {self.min_samples} (one analysis window) are needed"
            )

    @property
    def precision(self):
        """The precision asked for: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"``."""
        return self.runner.precision

    def set_precision(self, precision):
        """Runs the encoder in ``precision`` from the next call on (see ``speechbrain_datar.inference.precision``)."""
        self.runner.set_precision(precision)

    def forward(self, inputs, lengths=None, max_windows=None):
        """Embeds each window of features, or of waveforms (a tensor, or a ``StreamedAudio``) when this module
        has ``features``; ``max_windows`` windows per encoder call (default: the module's)."""
        if self.features is not None:
            self.check_waveforms(inputs, lengths)
            device = next(self.encoder.parameters()).device
            inputs = WaveformFrames(inputs, self.features, self.normalizer, device)
        embeddings, valid = sliding_window_embeddings(
            self.runner, inputs, lengths, self.window_frames, self.hop_frames, max_windows or self.max_windows
        )
        return WindowEmbeddings.of(embeddings, valid)


class WindowScoreAverage(nn.Module):
    """The ``classifier`` an exported audio model gives ``EncoderClassifier``: the head on every window, the
    probabilities averaged over each clip's windows.

    ``scores`` returns ``{name: log_probs [batch, 1, C]}``, as every head does; ``forward``, what
    ``EncoderClassifier`` calls, unwraps the single output of a one-head model into a tensor (a model of
    several heads gives ``SeveralHeads``, which says which interface to use).

    Arguments
    ---------
    classifier : torch.nn.Module
        The classification head (a head of ``nnet.classifier``).
    windows : SlidingWindowEmbedding or None
        Unused (version 0.2 exports pass it): the window layout travels with the embeddings.

    Example
    -------
    >>> from speechbrain_datar.nnet.classifier import Classifier
    >>> emb = WindowEmbeddings.of(torch.randn(1, 2, 4), torch.tensor([[True, False]]))
    >>> WindowScoreAverage(Classifier(4, 3))(emb).shape
    torch.Size([1, 1, 3])
    """

    def __init__(self, classifier, windows=None):
        super().__init__()
        self.classifier = classifier

    def scores(self, embeddings):
        """``{name: log of the window-averaged probabilities [batch, 1, C]}``."""
        return average_window_scores(self.classifier, embeddings)

    def forward(self, embeddings):
        """The averaged log-probabilities: a tensor for a model of one head (``EncoderClassifier``'s contract)."""
        scores = self.scores(embeddings)
        return classifier_module_output(scores)


class SlidingWindows:
    """The evaluation of audio models: sliding windows of ``window_frames`` every ``hop_frames``, embedded
    ``max_windows`` at a time, their probabilities averaged per clip. The recipe's validation and test and
    the exported model (``SlidingWindowEmbedding`` and ``WindowScoreAverage``) both use it.

    Example
    -------
    >>> from speechbrain_datar.lobes.models.datar import DATAR
    >>> from speechbrain_datar.nnet.classifier import Classifier
    >>> evaluation = SlidingWindows(window_frames=64, hop_frames=32, max_windows=2)
    >>> scores = evaluation.scores(DATAR("micro", n_mels=32).eval(), Classifier(128, 3).eval(),
    ...                            lambda wavs, lens: torch.randn(2, 150, 32), None, torch.tensor([1.0, 0.5]))
    >>> scores["label"].shape
    torch.Size([2, 1, 3])
    """

    def __init__(self, window_frames, hop_frames, max_windows=8):
        self.window_frames, self.hop_frames, self.max_windows = int(window_frames), int(hop_frames), max_windows

    def scores(self, encoder, head, audio_features, wavs, lengths, frames=None, crop_starts=None, resolution=None):
        """``{name: log_probs [batch, 1, C]}`` of whole clips; ``resolution`` (a coarse-to-fine schedule, or
        ``None``) maps full-resolution frames to the features' current ones."""
        window, hop = self.window_frames, self.hop_frames
        if resolution is not None:
            window, hop = resolution.frames(window), resolution.frames(hop)
        embeddings, valid = sliding_window_embeddings(
            encoder, audio_features(wavs, lengths), lengths, window, hop, self.max_windows
        )
        return average_window_scores(head, embeddings, valid)

    def interface(self, head):
        """The interface that serves the exported model: SpeechBrain's ``EncoderClassifier`` for one head of
        exclusive classes."""
        if head.multi_label:
            return "speechbrain_datar.inference.interfaces.AudioTagger"
        return (
            "EncoderClassifier"
            if len(head.names) == 1
            else "speechbrain_datar.inference.interfaces.MultiHeadAudioClassifier"
        )

    def exported_pipeline(self, encoder, min_samples, precision="auto"):
        """The inference hparams of the exported model's ``embedding_model`` and ``classifier``."""
        return AUDIO_PIPELINE.format(
            window_frames=self.window_frames,
            hop_frames=self.hop_frames,
            max_windows=int(self.max_windows) if self.max_windows else "null",
            min_samples=int(min_samples),
            precision=check_precision(precision),
        )


#: The exported audio model: sliding windows over the file, window scores averaged.
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
    precision: {precision}  # auto | fp32 | bf16 | int8; from_hparams(..., precision=...) chooses another at load

classifier: !new:speechbrain_datar.inference.sliding_window.WindowScoreAverage
    classifier: !ref <head>

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
"""
