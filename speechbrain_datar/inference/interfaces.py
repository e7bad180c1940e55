"""Inference interfaces for exported models, on SpeechBrain's ``Pretrained``.

One family: every interface derives from ``ClassifierInterface`` and returns its results keyed by head, as the
named types of ``inference.results`` (``{"label": ClassResult}``, ``{"verb": ..., "noun": ...}``, ``{"labels":
Tags}``, ``{head: Timeline}``). ``StreamingInterface`` adds what every audio interface does: classify files of
any length and kind (audio files, the sound of video files) as a stream, and tell when each class sounds.

- ``StreamingClassifier``: SpeechBrain's ``EncoderClassifier`` (the exported one-head model), whose
  ``classify_file`` streams and returns ``EncoderClassifier``'s ``(out_prob, score, index, text_lab)``;
- ``AudioTagger``: multi-label models (AudioSet, FSD50K): every class's probability and the classes above
  a threshold;
- ``MultiHeadAudioClassifier``: models with several heads (EPIC-KITCHENS: verb and noun);
- ``AudioVisualClassifier``: audio-visual models (MBT, DATAR beside a visual stream) from sound and frames;
- ``speechbrain_datar.inference.onnx_runtime.OnnxAudioClassifier``: an ONNX export, run by onnxruntime.

``classify_file_by_head`` and ``classify_batch_by_head`` return results by head on every interface. The two
that are SpeechBrain's ``EncoderClassifier`` (``StreamingClassifier``, ``AudioTagger``) return one head's result
itself from ``classify_file`` and ``classify_batch``, as ``EncoderClassifier`` does (``inference.adapters``);
every other interface returns them by head there too. ``AudioClassifier`` is version 0.2's name of
``StreamingClassifier`` (SpeechBrain has an ``AudioClassifier`` of its own, on another base).
"""

import logging
import time

import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.inference.interfaces import Pretrained

from speechbrain_datar.dataio.audio import clip_duration, load_clip
from speechbrain_datar.dataio.crops import crop_frames, crop_starts
from speechbrain_datar.dataio.frames import FrameTransform
from speechbrain_datar.dataio.labels import class_names, label_encoders_of
from speechbrain_datar.dataio.streaming import StreamedAudio
from speechbrain_datar.dataio.video import is_video, probe_video
from speechbrain_datar.deprecation import deprecated_class
from speechbrain_datar.inference.adapters import one_or_by_head
from speechbrain_datar.inference.results import ClassifiedClip, Timeline, best_class, tags
from speechbrain_datar.inference.sliding_window import WaveformFrames
from speechbrain_datar.inference.timeline import recording_timeline, segments, window_timeline

__all__ = [
    "AudioTagger",
    "AudioVisualClassifier",
    "ClassifierInterface",
    "MultiHeadAudioClassifier",
    "StreamingClassifier",
    "StreamingInterface",
    "best_class",
    "tags",
]

logger = logging.getLogger(__name__)


def keyed(scores, keys):
    """Scores by label key: a one-output head's output under the one key (exports of version 0.2 did not name
    their heads' outputs; a tagger's key is ``labels``).

    Example
    -------
    >>> list(keyed({"label": torch.zeros(1, 3)}, ["labels"]))
    ['labels']
    """
    keys = list(keys)
    if len(scores) == 1 and len(keys) == 1:
        return {keys[0]: next(iter(scores.values()))}
    return scores


class ClassifierInterface:
    """The root of every interface: results keyed by head, decoded from the heads' log-probabilities.

    A subclass says what its heads' classes are (``class_names``) and how it classifies
    (``classify_file_by_head``); ``multi_label`` interfaces decode tags above ``threshold``.
    """

    #: Multi-label heads: every class's probability and the classes above ``threshold`` (``Tags``).
    multi_label = False

    def class_names(self):
        """``{head: [class name by index]}``."""
        return class_names(self.hparams)

    @property
    def threshold(self):
        """The probability a class needs to be a tag (multi-label models), as exported."""
        return self.hparams.threshold

    def decode(self, scores, threshold=None):
        """``{head: ClassResult}`` (``{head: Tags}`` for multi-label heads, above ``threshold``, default the
        exported one) of the averaged log-probabilities ``{head: [batch, C]}``."""
        names = self.class_names()
        scores = keyed(scores, names)
        if self.multi_label:
            threshold = self.threshold if threshold is None else float(threshold)
            return {name: tags(log_probs, names[name], threshold) for name, log_probs in scores.items()}
        return {name: best_class(log_probs, names[name]) for name, log_probs in scores.items()}

    def classify_file_by_head(self, path, **options):
        """A file's results by head."""
        raise NotImplementedError

    def classify_file(self, path, *args, **options):
        """A file's results by head (the interfaces that are SpeechBrain's ``EncoderClassifier`` return one
        head's result itself, as it does)."""
        return self.classify_file_by_head(path, *args, **options)


class VideoFiles:
    """``load_audio`` that reads video files' audio streams too (SpeechBrain's reads audio files only)."""

    def load_audio(self, path, savedir=None):
        """The mono waveform at the model's rate, from an audio file or a video file's audio stream."""
        if is_video(str(path)):
            return load_clip(str(path), self.audio_normalizer.sample_rate)
        return super().load_audio(path, savedir=savedir)


class StreamingInterface(ClassifierInterface, VideoFiles):
    """What every audio interface does: classify a file of any length as a stream (``stream_scores``) and tell
    when each class sounds (``timeline``), with results by head.
    """

    last_realtime_factor = None

    def __init__(self, *args, precision=None, **kwargs):
        super().__init__(*args, **kwargs)
        # SpeechBrain's own run option (``from_hparams(..., run_opts={"precision": "bf16"})``) chooses it too;
        # the keyword wins over it, and both over the exported folder's.
        asked = (kwargs.get("run_opts") or {}).get("precision") if isinstance(kwargs.get("run_opts"), dict) else None
        precision = precision or asked
        if precision is not None:
            self.set_precision(precision)

    def set_precision(self, precision):
        """Runs the encoder in ``precision`` (``"fp32"``, ``"bf16"`` or ``"int8"``) from now on; the exported
        folder names one (``precision`` of its ``embedding_model``), ``from_hparams(..., precision=...)``
        chooses another at load. A device that cannot run it falls back to fp32 with a logged message
        (``speechbrain_datar.inference.precision``)."""
        self.mods.embedding_model.set_precision(precision)

    @property
    def precision_running(self):
        """The precision the encoder ran in at its last call (after any fallback), ``None`` before the first."""
        return self.mods.embedding_model.runner.running

    @property
    def label_encoders(self):
        """``{key: CategoricalEncoder}``, one per head."""
        return label_encoders_of(self.hparams)

    def stream_scores(self, path, block_seconds=30.0, windows_per_call=None):
        """Log of the window-averaged class probabilities of a file, decoded as a stream: ``{name: [1, C]}``.

        Arguments
        ---------
        path : str
            Audio file, or video file whose sound is classified.
        block_seconds : float
            Seconds of the file decoded at once (the result does not depend on it).
        windows_per_call : int or None
            Windows embedded per encoder call. ``None``: one on the CPU, where larger calls ran slower
            (DATAR-tiny on 2 cores: 44x real time with 1, 25x with 8; the cache, not the arithmetic, is
            the limit), and the exported ``max_windows`` on a GPU.
        """
        windows = self.mods.embedding_model
        stream = StreamedAudio(path, self.audio_normalizer.sample_rate, block_seconds)
        if windows_per_call is None and torch.device(self.device).type == "cpu":
            windows_per_call = 1
        start = time.perf_counter()
        with torch.no_grad():
            scores = self.mods.classifier.scores(windows(stream, None, max_windows=windows_per_call))
        seconds = time.perf_counter() - start
        self.last_realtime_factor = stream.duration / max(seconds, 1e-9)
        logger.info(
            "%s: %.1f s of audio in %.2f s, %.1fx real time", path, stream.duration, seconds, self.last_realtime_factor
        )
        return {name: log_probs.squeeze(1) for name, log_probs in scores.items()}

    def classify_file_by_head(self, path, block_seconds=30.0, windows_per_call=None, **options):
        """Classifies an audio file, or a video file's sound, of any length, decoded as a stream (see
        ``stream_scores``): ``{head: ClassResult}`` (``{head: Tags}`` for multi-label models); ``options`` go to
        ``decode``."""
        if self.mods.embedding_model.features is None:  # a model exported before features moved into the windows
            return self.decode(self.batch_scores(self.load_audio(path).unsqueeze(0)), **options)
        return self.decode(self.stream_scores(path, block_seconds, windows_per_call), **options)

    def classify_batch_by_head(self, wavs, wav_lens=None, **options):
        """Classifies waveforms ``[batch, samples]``: ``{head: ClassResult}`` (``{head: Tags}``)."""
        return self.decode(self.batch_scores(wavs, wav_lens), **options)

    def batch_scores(self, wavs, wav_lens=None):
        """Log of the window-averaged class probabilities of waveforms ``[batch, samples]``: ``{name: [batch, C]}``."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=self.device)
        wavs, wav_lens = wavs.to(self.device).float(), wav_lens.to(self.device)
        with torch.no_grad():
            feats = self.mods.mean_var_norm(self.mods.compute_features(wavs), wav_lens)
            scores = self.mods.classifier.scores(self.mods.embedding_model(feats, wav_lens))
        return {name: log_probs.squeeze(1) for name, log_probs in scores.items()}

    def timeline(self, path, threshold=0.5, min_seconds=0.0, method="windows", window_seconds=1.0, hop_seconds=0.125):
        """When each class sounds in a file: class probabilities over time and the segments above ``threshold``.

        Arguments
        ---------
        path : str
            Audio file, or video file whose sound is read.
        threshold : float
            Probability a class needs over a stretch of time to make a segment.
        min_seconds : float
            Shorter segments are left out.
        method : str
            ``"windows"``: windows of ``window_seconds`` every ``hop_seconds``, each classified
            alone (any encoder). ``"columns"``: the time columns of the encoder's final map within
            the model's own windows (encoders with ``time_column_frames``: DATAR, 0.32 s steps, but
            the deformable blocks' global attention spreads a class over the window).

        Returns
        -------
        dict
            ``{head: Timeline}``: ``probs`` ``[rows, n_classes]``, one row per window or column;
            ``resolution``, the seconds per row; ``segments``, the ``Segment`` s (start, end, label, score)
            in seconds (see ``timeline.segments``).
        """
        windows = self.mods.embedding_model
        device = next(windows.encoder.parameters()).device
        source = WaveformFrames(
            StreamedAudio(path, self.audio_normalizer.sample_rate), windows.features, windows.normalizer, device
        )
        head = self.mods.classifier.classifier
        frame = self.frame_seconds()
        resolution, offset = self.timeline_rows(method, window_seconds, hop_seconds)
        with torch.no_grad():
            if method == "columns":
                probs = recording_timeline(windows.encoder, head, source, windows.window_frames, windows.hop_frames)
            else:
                window, hop = max(1, round(window_seconds / frame)), max(1, round(hop_seconds / frame))
                probs = window_timeline(windows.runner, head, source, window, hop)
        names = self.class_names()
        probs = keyed(probs, names)
        return {
            name: Timeline(
                probs[name], resolution, segments(probs[name], resolution, names[name], threshold, min_seconds, offset)
            )
            for name in probs
        }

    def timeline_rows(self, method="windows", window_seconds=1.0, hop_seconds=0.125):
        """Where ``timeline``'s rows lie: ``(resolution, offset)``, the seconds per row and where row 0 starts
        (a window's row stands for the hop around its centre; a column's for its own span)."""
        frame = self.frame_seconds()
        if method == "columns":
            return self.mods.embedding_model.encoder.time_column_frames * frame, 0.0
        if method != "windows":
            raise ValueError(f"method must be 'windows' or 'columns', got {method!r}")
        window, hop = max(1, round(window_seconds / frame)), max(1, round(hop_seconds / frame))
        return hop * frame, (window - hop) / 2 * frame

    def frame_seconds(self):
        """Seconds between feature frames."""
        return self.mods.embedding_model.features.compute_STFT.hop_length / self.audio_normalizer.sample_rate


class StreamingClassifier(StreamingInterface, EncoderClassifier):
    """SpeechBrain's ``EncoderClassifier`` for an exported one-head model, whose ``classify_file`` also reads
    video files by their sound and classifies hour-long recordings in bounded memory: the file is decoded as
    a stream while the windows are embedded a chunk at a time, with a progress bar when the file is long and
    its speed logged (also kept in ``last_realtime_factor``). The result equals ``classify_batch`` of the
    whole waveform.

    Example (a folder exported by a recipe)::

        classifier = StreamingClassifier.from_hparams(source="results/datar_tiny/1234/pretrained")
        out_prob, score, index, label = classifier.classify_file("clip.mp4")
        classifier.classify_file_by_head("clip.mp4")["label"].text_lab   # the same, by head
    """

    def classify_file(self, path, block_seconds=30.0, windows_per_call=None, **options):
        """``EncoderClassifier``'s result for a file of any length, decoded as a stream: the one head's
        ``ClassResult`` ``(out_prob, score, index, text_lab)`` (``classify_file_by_head`` gives it by head)."""
        return one_or_by_head(self.classify_file_by_head(path, block_seconds, windows_per_call, **options))


#: Version 0.2's name of ``StreamingClassifier`` (it shared its name with SpeechBrain's own ``AudioClassifier``).
AudioClassifier = deprecated_class(StreamingClassifier, "AudioClassifier", "StreamingClassifier")
# Version 0.2 had timelines as a mixin; every interface has them now.
Timelines = deprecated_class(StreamingInterface, "Timelines", "StreamingInterface (every interface has timeline)")


class AudioTagger(StreamingClassifier):
    """Multi-label tagging (AudioSet, FSD50K): the probability of every class and the classes above a threshold.

    ``classify_file`` and ``classify_batch`` return ``(probs, scores, indices, labels)``, like
    ``EncoderClassifier``'s four values: ``probs`` ``[batch, n_classes]`` (sigmoid, averaged
    over the windows), and per clip the scores, indices and names of the classes whose
    probability reaches ``threshold`` (the exported ``threshold`` unless given), highest
    first. ``timeline`` says when they sound.

    Example (a folder exported by the FSD50K or AudioSet recipe)::

        tagger = AudioTagger.from_hparams(source="results/fsd50k_datar_tiny/1234/pretrained")
        probs, scores, indices, labels = tagger.classify_file("street.wav", threshold=0.3)
        probs, resolution, found = tagger.timeline("street.wav")["labels"]   # [Segment(start, end, label, score)]
    """

    HPARAMS_NEEDED = ["label_keys", "threshold"]
    multi_label = True

    def classify_batch(self, wavs, wav_lens=None, threshold=None):
        """Tags waveforms ``[batch, samples]``: the one head's ``Tags``."""
        return one_or_by_head(self.classify_batch_by_head(wavs, wav_lens, threshold=threshold))

    def classify_file(self, path, block_seconds=30.0, windows_per_call=None, threshold=None):
        """Tags an audio file, or a video file's sound, of any length (decoded as a stream): the one head's
        ``Tags``."""
        return one_or_by_head(self.classify_file_by_head(path, block_seconds, windows_per_call, threshold=threshold))


class MultiHeadAudioClassifier(StreamingInterface, Pretrained):
    """``EncoderClassifier``'s counterpart for models with several heads (EPIC-Kitchens: verb and noun).

    Load an exported folder with ``MultiHeadAudioClassifier.from_hparams(source=folder)``.
    Every method returns a dict with one entry per head, each entry holding what
    ``EncoderClassifier`` returns for its single head; ``classify_file`` streams, as
    ``StreamingClassifier``'s does.
    """

    MODULES_NEEDED = ["compute_features", "mean_var_norm", "embedding_model", "classifier"]
    HPARAMS_NEEDED = ["label_keys"]

    def encode_batch(self, wavs, wav_lens=None):
        """Embeddings ``[batch, n_windows, dim]`` (``[batch, 1, dim]`` for clips up to one window)."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=self.device)
        wavs, wav_lens = wavs.to(self.device).float(), wav_lens.to(self.device)
        feats = self.mods.mean_var_norm(self.mods.compute_features(wavs), wav_lens)
        return self.mods.embedding_model(feats, wav_lens)

    def classify_batch(self, wavs, wav_lens=None):
        """``{head: ClassResult}`` of waveforms ``[batch, samples]``."""
        return self.classify_batch_by_head(wavs, wav_lens)

    def forward(self, wavs, wav_lens=None):
        """Runs the classification."""
        return self.classify_batch(wavs, wav_lens)


class AudioVisualClassifier(ClassifierInterface, Pretrained):
    """Serves an exported audio-visual model (``hparams/mbt.yaml``, ``hparams/late_fusion.yaml``).

    ``classify_file`` reads a video file's sound and frames and classifies it as the
    recipe's evaluation does (temporal crops of the training span, logits averaged).
    A file without a video stream (an audio file too) is classified from its sound
    alone, a video without sound from its frames alone; the result says which.

    Example (a folder exported by the recipe)::

        model = AudioVisualClassifier.from_hparams(source="results/mbt_base/1234/pretrained")
        result = model.classify_file("clip.mp4")["label"]
        out_prob, score, index, label = result
        result.modalities  # ("audio", "video")
    """

    MODULES_NEEDED = ["embedding_model", "classifier"]
    HPARAMS_NEEDED = ["label_keys", "modalities", "sample_rate", "clip_seconds", "eval_crops", "frames"]

    def load_media(self, path):
        """A file's waveform (or ``None``), its crops' uint8 frames (or ``None``), the crop starts and the
        modalities used."""
        path = str(path)
        found = {"audio": True, "video": False}
        if is_video(path):
            info = probe_video(path)
            found = {"audio": info["audio"] is not None, "video": info["video"] is not None}
        used = tuple(m for m in self.hparams.modalities if found[m])
        if not used:
            raise ValueError(f"{path} has no {' and no '.join(self.hparams.modalities)} stream for this model")
        if len(used) < len(self.hparams.modalities):
            logger.info(
                "%s: no %s stream; classified from its %s alone",
                path,
                " and ".join(m for m in self.hparams.modalities if m not in used),
                " and ".join(used),
            )
        duration = clip_duration(path)
        starts = crop_starts(duration, self.hparams.clip_seconds, self.hparams.eval_crops)
        wav = load_clip(path, self.hparams.sample_rate) if "audio" in used else None
        frames = None
        if "video" in used:
            options = self.hparams.frames
            frames = crop_frames(
                path,
                0.0,
                duration,
                starts,
                self.hparams.clip_seconds,
                options["n_frames"],
                FrameTransform(options["size"]),
                options["sampling"],
                options["stride"],
            )
        return wav, frames, starts, used

    def classify_batch(self, wavs=None, wav_lens=None, frames=None, starts=None):
        """``{head: ClassResult}``: per head, log-probabilities ``[batch, C]``, best score, best index, best label.

        Arguments
        ---------
        wavs : torch.Tensor or None
            ``[batch, samples]`` at the model's rate.
        wav_lens : torch.Tensor or None
            Relative lengths.
        frames : torch.Tensor or None
            uint8 ``[batch, n_crops, n_frames, 3, size, size]``.
        starts : torch.Tensor or None
            ``[batch, n_crops]`` crop starts in seconds (default: every crop at 0).
        """
        batch = (wavs if wavs is not None else frames).shape[0]
        if starts is None:
            starts = torch.zeros(batch, self.hparams.eval_crops)
        if wavs is not None:
            wavs = wavs.to(self.device).float()
            wav_lens = torch.ones(batch, device=self.device) if wav_lens is None else wav_lens.to(self.device)
        frames = None if frames is None else frames.to(self.device)
        with torch.no_grad():
            scores = self.mods.classifier(self.mods.embedding_model(wavs, wav_lens, frames, starts.to(self.device)))
        return self.decode(scores)

    classify_batch_by_head = classify_batch

    def classify_file_by_head(self, path):
        """Classifies a video (or audio) file: ``{head: ClassifiedClip}``, each saying which modalities the file
        gave."""
        wav, frames, starts, used = self.load_media(path)
        results = self.classify_batch(
            None if wav is None else wav.unsqueeze(0),
            None,
            None if frames is None else frames.unsqueeze(0),
            torch.tensor([starts]),
        )
        return {key: ClassifiedClip(*result, modalities=used) for key, result in results.items()}

    def forward(self, wavs=None, wav_lens=None, frames=None, starts=None):
        """Runs the classification."""
        return self.classify_batch(wavs, wav_lens, frames, starts)
