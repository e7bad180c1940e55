"""Classification with the ONNX graphs of ``speechbrain_datar.export_onnx`` and onnxruntime.

``OnnxAudioClassifier`` does what the exported PyTorch model's ``classify_file``
does (the same windows, hop and probability averaging, the file decoded as a
stream), with the features and the network run by onnxruntime.
"""

import json
import logging
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from speechbrain_datar.dataio.streaming import StreamedAudio
from speechbrain_datar.inference.sliding_window import (
    PROGRESS_AFTER_CHUNKS,
    SampleSpans,
    average_window_scores,
    windows_per_clip,
)

logger = logging.getLogger(__name__)


class OnnxAudioClassifier:
    """An exported classifier run by onnxruntime: ``classify_file`` and ``classify_batch`` as SpeechBrain's
    ``EncoderClassifier`` has them (``(out_prob, score, index, text_lab)``; a dict of them per head for a
    multi-head model).

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
        out_prob, score, index, label = classifier.classify_file("recording.flac")
    """

    last_realtime_factor = None

    def __init__(self, folder, threads=None, windows_per_call=1):
        import onnxruntime

        with open(os.path.join(folder, "onnx.json")) as f:
            self.meta = json.load(f)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: constant folding notes about CastLike are not for users
        # Threads that spin between calls take the cores from the decoding and the features between windows
        # (2 cores, 10 min file: 18x real time spinning, 25-27x without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        self.classifier = onnxruntime.InferenceSession(os.path.join(folder, "classifier.onnx"), options,
                                                       providers=providers)
        self.features = onnxruntime.InferenceSession(os.path.join(folder, "features.onnx"), options,
                                                     providers=providers)
        self.windows_per_call = max(1, int(windows_per_call))
        self.labels = self.meta["labels"]

    def _frames(self, spans, start, stop):
        samples = spans.span(start, stop).numpy()
        return self.features.run(None, {"samples": samples})[0]

    def window_scores(self, spans):
        """Log-probabilities of every window of a recording, ``{head: [n_windows, n_classes]}``."""
        meta = self.meta
        window, hop, graph_frames, block = (meta["window_frames"], meta["hop_frames"], meta["graph_frames"],
                                            meta["block_frames"])
        n_frames = spans.n_frames
        n_windows = int(windows_per_clip(torch.tensor(n_frames), window, hop))
        span = min(window, n_frames)
        padded = max(graph_frames, -(-span // block) * block)
        scores = {name: [] for name in meta["outputs"]}
        calls = range(0, n_windows, self.windows_per_call)
        for first in tqdm(calls, desc="windows", unit="call", disable=len(calls) < PROGRESS_AFTER_CHUNKS,
                          dynamic_ncols=True):
            starts = range(first * hop, min(first + self.windows_per_call, n_windows) * hop, hop)
            feats = np.zeros((len(starts), padded, meta["n_mels"]), dtype=np.float32)
            lengths = np.zeros(len(starts), dtype=np.float32)
            for row, start in enumerate(starts):
                stop = min(start + span, n_frames)
                feats[row, : stop - start] = self._frames(spans, start, stop)[0]
                lengths[row] = (stop - start) / padded
            outputs = self.classifier.run(None, {"blocks": feats.reshape(len(starts), -1, block, meta["n_mels"]),
                                                 "lengths": lengths})
            for name, value in zip(meta["outputs"], outputs[1:]):
                scores[name].append(value)
        return {name: np.concatenate(value) for name, value in scores.items()}

    def classify_batch(self, wavs):
        """Classifies one waveform (``[samples]`` or ``[1, samples]``, at the model's rate)."""
        wavs = torch.as_tensor(wavs, dtype=torch.float32).reshape(1, -1)
        return self.classify_spans(SampleSpans(wavs, self.meta["hop_samples"], self.meta["n_fft"] // 2))

    def classify_spans(self, spans):
        """Classifies the recording behind ``spans`` (a ``SampleSpans``)."""
        if spans.n_samples < self.meta["min_samples"]:
            raise ValueError(f"audio of {spans.n_samples} samples is too short to classify: at least "
                             f"{self.meta['min_samples']} (one analysis window) are needed")
        scores = self.window_scores(spans)
        results = {}
        for (key, names), output in zip(self.labels.items(), self.meta["outputs"]):
            out_prob = average_window_scores(lambda x: x, torch.from_numpy(scores[output])[None])[:, 0]
            score, index = torch.max(out_prob, dim=-1)
            results[key] = (out_prob, score, index, [names[int(i)] for i in index])
        return results if len(results) > 1 else next(iter(results.values()))

    def classify_file(self, path, block_seconds=30.0):
        """Classifies an audio file, or a video file's sound, of any length, decoded as a stream."""
        start = time.perf_counter()
        stream = StreamedAudio(path, self.meta["sample_rate"], block_seconds)
        result = self.classify_spans(SampleSpans(stream, self.meta["hop_samples"], self.meta["n_fft"] // 2))
        seconds = time.perf_counter() - start
        self.last_realtime_factor = stream.duration / max(seconds, 1e-9)
        logger.info("%s: %.1f s of audio in %.2f s, %.1fx real time", path, stream.duration, seconds,
                    self.last_realtime_factor)
        return result
