"""ONNX export of an exported audio classifier: the embedding model and its head, and the features.

Command line (``speechbrain_datar.export_onnx`` is this module's version 0.2 path)::

    python -m speechbrain_datar.export_onnx results/datar_tiny/1234/pretrained [--out DIR]

reads a folder written by a recipe (``EncoderClassifier.from_hparams`` loads it) and
writes, into ``DIR`` (default: ``<folder>/onnx``):

``classifier.onnx``
    ``blocks`` ``[batch, n_blocks, block_frames, n_mels]`` normalised log-mel features cut
    into blocks of ``block_frames`` (the encoder's ``export_time_step``) and ``lengths``
    ``[batch]`` (relative, as SpeechBrain passes them) -> ``embedding`` ``[batch, dim]`` and
    ``log_probs`` ``[batch, n_classes]`` (``log_probs_<head>`` for each head of a multi-head
    model). The time axis is dynamic: any number of blocks. A clip is padded to whole blocks
    and its true length given in ``lengths``; the encoder masks the padding, as it does in
    a batch, so the result is the clip's own (``OnnxAudioClassifier`` does this).
``features.onnx``
    ``samples`` ``[batch, n]`` -> normalised log-mel frames ``[batch, 1 + (n - n_fft) // hop,
    n_mels]``: SpeechBrain's ``Fbank`` without centring, so frames ``[a, b)`` of a recording
    come from samples ``[a * hop - n_fft / 2, (b - 1) * hop + n_fft / 2)`` (zeros outside).
``onnx.json``
    What a runtime needs: rates, window and hop, block size, labels of every head, and for a multi-label
    model the exported tagging threshold.

``speechbrain_datar.inference.onnx_runtime.OnnxAudioClassifier`` classifies files with
these graphs and onnxruntime, window by window, as the exported PyTorch model does.
Needs ``onnx``, ``onnxscript`` and ``onnxruntime`` (``pip install speechbrain-datar[onnx]``).
"""

import argparse
import copy
import json
import logging
import os
import tempfile
import time

import torch
from speechbrain.inference.interfaces import Pretrained
from torch import nn

from speechbrain_datar.dataio.labels import class_names

logger = logging.getLogger(__name__)

#: ONNX operator set of the exported graphs (GridSample, STFT and LayerNormalization need 17 or later).
OPSET = 18


class ClassifierGraph(nn.Module):
    """Encoder and head as one graph: ``(blocks, lengths) -> (embedding, log_probs of each head)``.

    Example
    -------
    >>> from speechbrain_datar.lobes.models.datar import DATAR
    >>> from speechbrain_datar.nnet.classifier import Classifier
    >>> graph = ClassifierGraph(DATAR("micro", n_mels=32), Classifier(128, 3)).eval()
    >>> embedding, log_probs = graph(torch.randn(2, 1, 224, 32), torch.tensor([1.0, 0.5]))
    >>> embedding.shape, log_probs.shape
    (torch.Size([2, 128]), torch.Size([2, 3]))
    """

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, blocks, lengths):
        """Embeds ``[batch, n_blocks, block_frames, n_mels]`` features and classifies them."""
        # Blocks of a fixed size keep every size in the graph an exact multiple of the number of blocks.
        embedding = self.encoder(blocks.flatten(1, 2), lengths)
        return (embedding[:, 0], *(value[:, 0] for value in self.head(embedding).values()))


class FeatureGraph(nn.Module):
    """Uncentred log-mel features, normalised: ``samples [batch, n] -> [batch, frames, n_mels]``.

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> graph = FeatureGraph(Fbank(n_mels=20))
    >>> graph(torch.randn(1, 400 + 160 * 9)).shape
    torch.Size([1, 10, 20])
    """

    def __init__(self, features, normalizer=None):
        super().__init__()
        self.features = copy.deepcopy(features)
        self.features.compute_STFT.center = False
        self.normalizer = normalizer

    def forward(self, samples):
        """Frames of ``samples``, each from its own ``n_fft`` samples."""
        feats = self.features(samples)
        return feats if self.normalizer is None else self.normalizer(feats)


def load_exported(folder, savedir):
    """Loads a recipe's exported folder; returns its ``Pretrained`` interface. Audio-visual models (exported for
    ``AudioVisualClassifier``, with temporal crops) are refused."""
    if not os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
        raise FileNotFoundError(f"{folder} holds no hyperparams.yaml: give the folder a recipe exported")
    model = Pretrained.from_hparams(source=os.path.abspath(folder), savedir=savedir)
    if "modalities" in vars(model.hparams):
        raise ValueError(f"{folder} holds an audio-visual model; the ONNX export covers audio classifiers")
    if model.mods.embedding_model.features is None:
        raise ValueError(f"{folder} was exported before features moved into the windows: export it again")
    return model


def quantize_classifier_graph(path):
    """Rewrites the ONNX graph at ``path`` with its matrix products dynamically quantized to int8 (onnxruntime's
    quantization tool: int8 weights, activations quantized per call); gathers, attention, sampling stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared, quantized = path + ".prepared", path + ".int8"
    try:
        # The exported graph multiplies by Transpose(weight); the tool quantizes only products whose weight is a
        # stored tensor, so the transposes are folded into the weights first (onnxruntime's basic optimisations).
        quant_pre_process(path, prepared, skip_symbolic_shape=True)
        quantize_dynamic(prepared, quantized, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        os.replace(quantized, path)
    finally:
        for leftover in (prepared, quantized):
            if os.path.exists(leftover):
                os.remove(leftover)


def export_onnx(folder, destination=None, max_blocks=10000, precision=None):
    """Writes ``classifier.onnx``, ``features.onnx`` and ``onnx.json`` for an exported audio classifier.

    Arguments
    ---------
    folder : str
        A folder written by a recipe's export.
    destination : str or None
        Where to write (default ``<folder>/onnx``); created.
    max_blocks : int
        Largest number of blocks the graph is declared for.
    precision : str or None
        ``"fp32"`` or ``"int8"`` (the matrix products quantized by onnxruntime's tool); ``None``: the exported
        folder's precision, bf16 read as fp32 (onnxruntime's CPU kernels have no bf16 arithmetic).

    Returns
    -------
    dict
        The metadata written to ``onnx.json``.
    """
    destination = destination or os.path.join(folder, "onnx")
    with tempfile.TemporaryDirectory() as savedir:
        model = load_exported(folder, savedir)
    windows, head = model.mods.embedding_model, model.mods.classifier.classifier
    encoder = windows.encoder.eval()
    if precision is None:
        precision = "int8" if windows.precision == "int8" else "fp32"
    if precision not in ("fp32", "int8"):
        raise ValueError(f"ONNX graphs are exported in fp32 or int8, not {precision!r}")
    labels = class_names(model.hparams)
    step = int(encoder.export_time_step)
    graph_frames = encoder.export_frames(windows.window_frames)
    stft = windows.features.compute_STFT
    n_mels = encoder.n_mels
    os.makedirs(destination, exist_ok=True)

    start = time.perf_counter()
    head_names = [f"log_probs_{key}" for key in labels] if len(labels) > 1 else ["log_probs"]
    _export_classifier_graph(
        ClassifierGraph(encoder, head).eval(),
        os.path.join(destination, "classifier.onnx"),
        graph_frames,
        step,
        n_mels,
        max_blocks,
        head_names,
    )
    if precision == "int8":
        quantize_classifier_graph(os.path.join(destination, "classifier.onnx"))
    _export_feature_graph(windows, stft, os.path.join(destination, "features.onnx"))
    meta = dict(
        sample_rate=int(model.hparams.sample_rate),
        n_fft=int(stft.n_fft),
        hop_samples=int(stft.hop_length),
        n_mels=int(n_mels),
        window_frames=windows.window_frames,
        hop_frames=windows.hop_frames,
        block_frames=step,
        graph_frames=int(graph_frames),
        min_samples=windows.min_samples,
        outputs=head_names,
        labels=labels,
        encoder=type(encoder).__name__,
        precision=precision,
        opset=OPSET,
        torch=torch.__version__,
        multi_label=bool(head.multi_label),
        threshold=float(vars(model.hparams).get("threshold", 0.5)),
    )
    with open(os.path.join(destination, "onnx.json"), "w") as f:
        json.dump(meta, f, indent=1)
    logger.info("ONNX graphs written to %s in %.0f s", destination, time.perf_counter() - start)
    return meta


def _export_classifier_graph(graph, path, graph_frames, step, n_mels, max_blocks, head_names):
    """The encoder and head as one graph over ``[batch, n_blocks, step, n_mels]`` blocks and relative lengths,
    both axes dynamic."""
    blocks = torch.zeros(2, max(2, -(-graph_frames // step)), step, n_mels)
    lengths = torch.tensor([1.0, 0.5])
    batch = torch.export.Dim("batch", min=1, max=4096)
    n_blocks = torch.export.Dim("n_blocks", min=1 if step > 1 else graph_frames, max=max_blocks)
    with torch.no_grad():
        # Sizes in this graph follow from the number of blocks, but the symbolic engine cannot prove some of
        # the identities (min() of products); they are checked at run time instead of refused.
        program = torch.export.export(
            graph,
            (blocks, lengths),
            dynamic_shapes=({0: batch, 1: n_blocks}, {0: batch}),
            strict=False,
            prefer_deferred_runtime_asserts_over_guards=True,
        )
    # optimize=False: onnxscript's optimiser left a dangling input in this graph (torch 2.11); onnxruntime
    # optimises the graph itself when it loads it.
    torch.onnx.export(
        program,
        (blocks, lengths),
        path,
        dynamo=True,
        opset_version=OPSET,
        input_names=["blocks", "lengths"],
        output_names=["embedding", *head_names],
        optimize=False,
        external_data=False,
    )


def _export_feature_graph(windows, stft, path):
    """The features and their normalisation as a graph over waveforms of any length."""
    samples = torch.zeros(1, stft.n_fft + 99 * stft.hop_length)
    torch.onnx.export(
        FeatureGraph(windows.features, windows.normalizer).eval(),
        (samples,),
        path,
        dynamo=True,
        opset_version=OPSET,
        input_names=["samples"],
        output_names=["feats"],
        optimize=False,
        external_data=False,
        dynamic_shapes=(
            {0: torch.export.Dim("batch", max=4096), 1: torch.export.Dim("samples", min=stft.n_fft + 1, max=2**31 - 1)},
        ),
    )


def main(argv=None):
    """Command line: ``python -m speechbrain_datar.export_onnx <folder> [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a folder written by a recipe's export")
    parser.add_argument("--out", default=None, help="destination (default: <folder>/onnx)")
    parser.add_argument(
        "--precision", choices=("fp32", "int8"), default=None, help="default: the exported folder's (bf16: fp32)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    meta = export_onnx(args.folder, args.out, precision=args.precision)
    print(
        f"wrote {args.out or os.path.join(args.folder, 'onnx')}: {meta['encoder']} in {meta['precision']}, "
        f"{', '.join(f'{k} ({len(v)} classes)' for k, v in meta['labels'].items())}"
    )


if __name__ == "__main__":
    main()
