"""Classification with the ONNX graphs of ``speechbrain_datar.pretrained.onnx_export`` and onnxruntime.

``OnnxAudioClassifier`` does what the exported PyTorch model's ``classify_file`` does, through the same
code: ``sliding_window_embeddings`` cuts the recording into the same windows (the features of each chunk
from ``features.onnx``, the windows through ``classifier.onnx``) and ``average_window_scores`` averages
their probabilities; the file is decoded as a stream. Multi-label models give tags above the exported
threshold, as ``AudioTagger`` does.
"""

import logging
import os
import time

import numpy as np
import torch

from speechbrain_datar.dataio.decoding import unsupported_rate
from speechbrain_datar.dataio.streaming import StreamedAudio
from speechbrain_datar.dataio.strict_json import parse_json
from speechbrain_datar.deprecation import warn_moved
from speechbrain_datar.errors import DataError
from speechbrain_datar.inference.interfaces import ClassifierInterface
from speechbrain_datar.inference.sliding_window import SampleSpans, average_window_scores, sliding_window_embeddings

logger = logging.getLogger(__name__)

#: What ``onnx.json`` holds: key -> (type, smallest, largest) for numbers, type alone otherwise.
ONNX_META = {
    "sample_rate": (int, 1000, 768000),
    "n_fft": (int, 16, 1 << 16),
    "hop_samples": (int, 1, 1 << 16),
    "n_mels": (int, 1, 1024),
    "window_frames": (int, 1, 1 << 20),
    "hop_frames": (int, 1, 1 << 20),
    "block_frames": (int, 1, 1 << 20),
    "graph_frames": (int, 1, 1 << 20),
    "min_samples": (int, 1, 1 << 30),
    "outputs": list,
    "labels": dict,
    "encoder": str,
    "precision": str,
    "opset": int,
    "torch": str,
    "multi_label": bool,
    "threshold": ((int, float), 0.0, 1.0),
}
#: What an ONNX export runs in (bf16 has no onnxruntime CPU kernels and is never exported).
ONNX_PRECISIONS = ("fp32", "int8")


def read_onnx_meta(folder):
    """``onnx.json`` of an ONNX export, every value checked before it sizes anything: ``DataError`` in one line
    names the file and what is wrong (a missing or mistyped key, a number out of range, an unknown precision).

    Example
    -------
    >>> import json, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "onnx.json"), "w") as f:
    ...     json.dump({"sample_rate": 1e9}, f)
    >>> read_onnx_meta(folder)
    Traceback (most recent call last):
    ...
    speechbrain_datar.errors.DataError: .../onnx.json is not an ONNX export's metadata: sample_rate is 1000000000.0, not an int in [1000, 768000]
    """
    path = os.path.join(folder, "onnx.json")
    try:
        with open(path, "rb") as f:
            meta = parse_json(f.read((1 << 20) + 1), limit=1 << 20, max_depth=8)
        problem = _onnx_meta_problem(meta)
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as error:
        problem = str(error)
    if problem:
        raise DataError(f"{path} is not an ONNX export's metadata: {problem}")
    return meta


def _onnx_meta_problem(meta):
    if not isinstance(meta, dict):
        return f"a JSON {type(meta).__name__}, not an object"
    for key, kind in ONNX_META.items():
        value = meta.get(key)
        if isinstance(kind, tuple):
            kind, low, high = kind
            if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
                name = kind.__name__ if isinstance(kind, type) else "number"
                return f"{key} is {value!r}, not an {name} in [{low}, {high}]"
        elif not isinstance(value, kind):
            return f"{key} is {str(value)[:40]!r}, not a {kind.__name__}"
    if unsupported_rate(meta["sample_rate"]):
        return unsupported_rate(meta["sample_rate"])
    if meta["hop_samples"] > meta["n_fft"] or meta["hop_frames"] > meta["window_frames"]:
        return "hops longer than their windows"
    if meta["precision"] not in ONNX_PRECISIONS:
        return f"precision {meta['precision'][:20]!r} is not one of {ONNX_PRECISIONS}"
    labels = meta["labels"]
    if not labels or not all(isinstance(v, list) and v and all(isinstance(n, str) for n in v) for v in labels.values()):
        return "labels are not class names by head"
    outputs = meta["outputs"]
    if sum(len(v) for v in labels.values()) > 1 << 20 or len(outputs) != len(labels):
        return "labels and outputs do not match"
    if not all(isinstance(name, str) for name in outputs):
        return "outputs are not names"
    return None


class OnnxFeatureFrames:
    """Normalised frames of a recording computed by ``features.onnx`` (a frame source for
    ``sliding_window_embeddings``, like ``WaveformFrames``)."""

    def __init__(self, spans, session):
        self.spans, self.session = spans, session
        self.batch, self.n_frames, self.device = spans.batch, spans.n_frames, torch.device("cpu")

    def frames(self, start, stop):
        """Frames ``[start, stop)``, ``[batch, stop - start, n_mels]``."""
        samples = self.spans.span(start, stop).numpy()
        return torch.from_numpy(self.session.run(None, {"samples": samples})[0])


class OnnxWindows:
    """``classifier.onnx`` as the encoder of ``sliding_window_embeddings``: windows of features in, each head's
    log-probabilities out, side by side (``[n, 1, sum of the heads' classes]``)."""

    def __init__(self, session, meta):
        self.session, self.meta = session, meta

    def __call__(self, feats, lengths):
        span, block = feats.shape[1], self.meta["block_frames"]
        padded = max(self.meta["graph_frames"], -(-span // block) * block)
        blocks = np.zeros((feats.shape[0], padded, self.meta["n_mels"]), dtype=np.float32)
        blocks[:, :span] = feats.numpy()
        relative = np.ones(feats.shape[0], dtype=np.float32) if lengths is None else lengths.numpy()
        outputs = self.session.run(
            None,
            {
                "blocks": blocks.reshape(feats.shape[0], -1, block, self.meta["n_mels"]),
                "lengths": (relative * span / padded).astype(np.float32),
            },
        )
        return torch.from_numpy(np.concatenate(outputs[1:], axis=-1))[:, None]


class OnnxAudioClassifier(ClassifierInterface):
    """An exported classifier run by onnxruntime. ``classify_file`` and ``classify_batch`` return results by
    head, as every interface's ``classify_file_by_head`` does: ``{head: ClassResult}`` (``(out_prob, score,
    index, text_lab)``), or ``{head: Tags}`` for a multi-label model (``(probs, scores, indices, labels)``
    above ``threshold``).

    Arguments
    ---------
    folder : str
        A folder written by ``python -m speechbrain_datar.export_onnx`` (``onnx.json`` and the graphs).
    threads : int or None
        onnxruntime's intra-op threads (``None``: its default, every core).
    windows_per_call : int
        Windows of a recording classified per call of the graph.

    Example (a folder exported by a recipe, then to ONNX)::

        classifier = OnnxAudioClassifier("results/datar_tiny/1234/pretrained/onnx")
        out_prob, score, index, label = classifier.classify_file("recording.flac")["label"]
    """

    last_realtime_factor = None

    def __init__(self, folder, threads=None, windows_per_call=1):
        import onnxruntime

        self.meta = read_onnx_meta(folder)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: constant folding notes about CastLike are not for users
        # Threads that spin between calls take the cores from the decoding and the features between windows
        # (2 cores, 10 min file: 18x real time spinning, 25-27x without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        self.windows = OnnxWindows(
            onnxruntime.InferenceSession(os.path.join(folder, "classifier.onnx"), options, providers=providers),
            self.meta,
        )
        self.features = onnxruntime.InferenceSession(
            os.path.join(folder, "features.onnx"), options, providers=providers
        )
        self.windows_per_call = max(1, int(windows_per_call))
        self.labels = self.meta["labels"]

    def split(self, log_probs):
        """The heads' log-probabilities side by side -> ``{name: [*, n_classes]}``."""
        sizes = [len(names) for names in self.labels.values()]
        return dict(zip(self.labels, torch.split(log_probs, sizes, dim=-1)))

    def scores(self, spans):
        """Log of the window-averaged probabilities of the recording behind ``spans``: ``{name: [1, C]}``."""
        if spans.n_samples < self.meta["min_samples"]:
            raise ValueError(
                f"audio of {spans.n_samples} samples is too short to classify: at least "
                f"{self.meta['min_samples']} (one analysis window) are needed"
            )
        averaged = average_window_scores(self.split, *self._window_log_probs(spans))
        return {name: log_probs[:, 0] for name, log_probs in averaged.items()}

    def _window_log_probs(self, spans):
        """Every window's log-probabilities, the heads side by side (``[1, n_windows, C]``), and which are valid."""
        return sliding_window_embeddings(
            self.windows,
            OnnxFeatureFrames(spans, self.features),
            None,
            self.meta["window_frames"],
            self.meta["hop_frames"],
            self.windows_per_call,
        )

    def window_scores(self, spans):
        """Version 0.2's log-probabilities of every window, ``{head: [n_windows, n_classes]}`` (numpy)."""
        warn_moved("OnnxAudioClassifier.window_scores(spans)", "scores(spans), the window-averaged scores")
        log_probs, valid = self._window_log_probs(spans)
        return {name: value.numpy() for name, value in self.split(log_probs[0][valid[0]]).items()}

    def class_names(self):
        """``{head: [class name by index]}``."""
        return self.labels

    @property
    def multi_label(self):
        """Whether the heads are multi-label (``Tags`` above ``threshold``)."""
        return bool(self.meta.get("multi_label"))

    @property
    def threshold(self):
        """The probability a class needs to be a tag (multi-label models), as exported."""
        return self.meta["threshold"]

    def classify_spans(self, spans):
        """Version 0.2's ``decode(scores(spans))``."""
        warn_moved("OnnxAudioClassifier.classify_spans(spans)", "decode(scores(spans))")
        return self.decode(self.scores(spans))

    def classify_batch_by_head(self, wavs, threshold=None):
        """Classifies one waveform (``[samples]`` or ``[1, samples]``, at the model's rate): results by head."""
        wavs = torch.as_tensor(wavs, dtype=torch.float32).reshape(1, -1)
        spans = SampleSpans(wavs, self.meta["hop_samples"], self.meta["n_fft"] // 2)
        return self.decode(self.scores(spans), threshold)

    classify_batch = classify_batch_by_head

    def classify_file_by_head(self, path, block_seconds=30.0, threshold=None):
        """Classifies an audio file, or a video file's sound, of any length, decoded as a stream: results by
        head."""
        start = time.perf_counter()
        stream = StreamedAudio(path, self.meta["sample_rate"], block_seconds)
        result = self.decode(
            self.scores(SampleSpans(stream, self.meta["hop_samples"], self.meta["n_fft"] // 2)), threshold
        )
        seconds = time.perf_counter() - start
        self.last_realtime_factor = stream.duration / max(seconds, 1e-9)
        logger.info(
            "%s: %.1f s of audio in %.2f s, %.1fx real time", path, stream.duration, seconds, self.last_realtime_factor
        )
        return result
