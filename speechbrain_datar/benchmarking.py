"""What every benchmark in ``benchmarks/`` shares: the models at their paper sizes, timing, MACs, the
description of the machine a figure was measured on, and how results are written.

Every speed figure is recorded with ``machine(device)``: the CPU's model and instruction sets (AVX-512 BF16
and AMX multiply bf16 natively, VNNI int8), since a figure from one kind of CPU is no figure for another.

Example
-------
>>> print(table(["model", "ms"], [["DATAR-tiny", 175]]))
| model      | ms  |
|------------|-----|
| DATAR-tiny | 175 |
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "MODELS",
    "N_MELS",
    "add_device_argument",
    "build",
    "count_macs",
    "export_random_head",
    "make_clips",
    "machine",
    "recipe_module",
    "rss_kib",
    "synchronize",
    "table",
    "timed",
    "write_json",
    "write_recording",
]

#: The checkout this package runs from (its recipes/ and hparams/).
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 16000
#: The features of the exported benchmark models: the recipes' Kaldi-style fbank.
FEATURES = {"sample_rate": SAMPLE_RATE, "n_mels": 128, "n_fft": 512, "win_length": 25, "hop_length": 10}
FRAMES_PER_SECOND = 100  # 10 ms frame shift
N_MELS = 128
MODELS = ("datar-tiny", "datar-small", "datar-base", "ast")


def build(name, seconds=10):
    """The model called ``name`` in its paper configuration for 10 s clips.

    transformers' ASTModel has a fixed positional embedding, so it is built for ``seconds``.
    """
    if name.startswith("datar-"):
        from speechbrain_datar.lobes.models.datar import DATAR

        preset, _, stride = name.split("-", 1)[1].partition("-r")  # datar-tiny-r2: offset_strides=2
        return DATAR(preset, n_mels=N_MELS, reference_frames=1024, offset_strides=int(stride or 1))
    if name == "ast":
        from speechbrain_datar.lobes.models.ast import AST

        return AST("base", n_mels=N_MELS, target_length=1024, fstride=10, tstride=10)
    if name == "hf-ast":
        from transformers import ASTConfig, ASTModel

        config = ASTConfig(max_length=frames(seconds), num_mel_bins=N_MELS, frequency_stride=10, time_stride=10)
        model = ASTModel(config)
        return _HuggingFaceAST(model)
    raise ValueError(f"unknown model {name!r}")


class _HuggingFaceAST(torch.nn.Module):
    """transformers' ASTModel behind our call signature (it takes [batch, time, n_mels] too)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, feats, lengths=None):
        """Embedding ``[batch, 1, dim]``: transformers' pooled output."""
        return self.model(feats).pooler_output.unsqueeze(1)


def frames(seconds):
    """Feature frames of ``seconds`` of audio (1024 for 10 s: the models' reference length)."""
    return int(round(seconds * FRAMES_PER_SECOND)) if seconds != 10 else 1024


def synchronize(device):
    """Waits for ``device`` (a CUDA device's queued kernels) before a clock is read."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats, warmup=3):
    """Median seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(device, size=2048, repeats=10):
    """GFLOP/s of a plain fp32 ``size x size`` matmul."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = timed(lambda: a @ b, device, repeats, warmup=3)
    return 2 * size**3 / seconds / 1e9


def flop_counter():
    """``FlopCounterMode`` that also counts scaled-dot-product attention on the CPU: torch's counter knows
    only the CUDA kernels of ``F.scaled_dot_product_attention`` and counts the CPU one as zero."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        """FLOPs of the attention's forward, whatever kernel ran it."""
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        """FLOPs of the attention's backward, whatever kernel ran it."""
        return sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    return FlopCounterMode(
        display=False,
        custom_mapping={
            aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
        },
    )


def count_macs(model, feats):
    """Multiply-accumulates of one forward pass of ``model`` on ``feats``."""
    with torch.no_grad(), flop_counter() as counter:
        model(feats)
    return counter.get_total_flops() / 2


def inference_time(model, feats, device, repeats):
    """Median seconds of one forward pass without gradients."""
    with torch.no_grad():
        return timed(lambda: model(feats), device, repeats)


def compiled_inference(model, feats, device, repeats):
    """``torch.compile`` of the model: compile time, seconds per clip and largest deviation from eager."""
    compiled = torch.compile(model)
    with torch.no_grad():
        start = time.perf_counter()
        out = compiled(feats)
        synchronize(device)
        compile_s = time.perf_counter() - start
        diff = (out - model(feats)).abs().max().item()
    return {
        "compile_s": compile_s,
        "compiled_infer_s_per_clip": inference_time(compiled, feats, device, repeats) / feats.shape[0],
        "compiled_max_abs_diff": diff,
    }


def train_step_time(model, feats, device, repeats):
    """Seconds per clip of forward + backward + AdamW step."""
    head = torch.nn.Linear(model.embedding_dim, 309).to(device)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    targets = torch.randint(0, 309, (feats.shape[0],), device=device)
    model.train()

    def step():
        """One optimiser step on the fixed batch."""
        optimizer.zero_grad(set_to_none=True)
        logits = head(model(feats)[:, 0])
        torch.nn.functional.cross_entropy(logits, targets).backward()
        optimizer.step()

    seconds = timed(step, device, repeats)
    model.eval()
    return seconds / feats.shape[0]


def rss_kib(field):
    """A size field of ``/proc/self/status`` in KiB (``"VmRSS:"``, ``"VmHWM:"``; 0 where it is missing)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def machine(device):
    """What a measurement ran on: the command, cores, threads, versions, the device and the CPU's model and
    instruction sets."""
    info = {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info.update(cpu_description())
    return info


#: The instruction sets a CPU figure depends on (AVX-512 BF16 and AMX: native bf16; VNNI: int8 dot products).
INSTRUCTION_SETS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_description():
    """The CPU's model name and which of ``INSTRUCTION_SETS`` it lists (``/proc/cpuinfo``): every speed figure is
    recorded with them, since a figure from one kind of CPU is no figure for another."""
    from speechbrain_datar.inference.precision import cpu_flags

    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    flags = cpu_flags()
    return {"cpu_model": model, "instruction_sets": [name for name in INSTRUCTION_SETS if name in flags]}


def write_json(path, results):
    """Writes the measurements to ``path`` (nothing when ``path`` is empty) and says so."""
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {path}")


def table(headers, rows):
    """A Markdown table of ``rows`` under ``headers``, columns padded to their widths."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, rule] + body)


def export_random_head(encoder, folder, hop_frames, **options):
    """``encoder`` under a random 309-class head, exported as the recipes export (10 s windows); ``options`` go
    to ``export_classifier``."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_datar.dataio.normalization import DatasetNormalization
    from speechbrain_datar.nnet.classifier import Classifier
    from speechbrain_datar.pretrained.export import export_classifier

    labels = CategoricalEncoder()
    labels.update_from_iterable([f"class{i}" for i in range(309)])
    return export_classifier(
        folder,
        encoder=encoder,
        head=Classifier(encoder.embedding_dim, 309).eval(),
        normalizer=DatasetNormalization(mean=-5.0, std=4.0),
        label_encoders={"label": labels},
        feature_options=FEATURES,
        window_frames=1001,
        hop_frames=hop_frames,
        **options,
    )


def write_recording(path, minutes):
    """``minutes`` of noise as a 16 kHz wav file, written a minute at a time."""
    import soundfile

    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        for _ in range(int(minutes)):
            f.write((0.1 * torch.randn(60 * SAMPLE_RATE)).clamp(-1, 1).numpy())
    return path


def make_clips(folder, n, seconds=10.0):
    """``n`` clips as ``.wav`` (16 kHz mono) and ``.mp4`` (640x360, 25 fps, 48 kHz stereo AAC)."""
    import numpy as np
    import soundfile

    from speechbrain_datar.dataio.synthetic import render_scene, synthesize_event, write_video

    rng = np.random.default_rng(0)
    stems = []
    for i in range(n):
        stem = os.path.join(folder, f"clip{i}")
        wav16 = synthesize_event("rising chirp", seconds, 16000, rng)
        soundfile.write(stem + ".wav", wav16, 16000)
        wav48 = synthesize_event("rising chirp", seconds, 48000, rng)
        frames = render_scene(i % 3, seconds, rng, fps=25, size=360)
        frames = np.concatenate([frames, frames[:, :, :280]], axis=2)  # 360 x 640
        write_video(stem + ".mp4", wav48, 48000, frames, fps=25, audio_codec="aac")
        stems.append(stem)
    return stems


def recipe_module(recipe, name):
    """The module ``recipes/<recipe>/<name>.py`` of this checkout (a data set's preparation, say), loaded from
    its file: recipes are scripts, not a package.

    Example
    -------
    >>> recipe_module("VGGSound", "vggsound_prepare").prepare_vggsound.__name__
    'prepare_vggsound'
    """
    import importlib.util

    path = os.path.join(CHECKOUT, "recipes", recipe, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{recipe}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_device_argument(parser, help_text="where the models run: cpu or cuda (default: cpu)", cpu_only=None):
    """Adds ``--device`` to a benchmark's ``parser``; ``args.device`` is then a ``torch.device``. A device this
    machine does not have is refused when the options are read, as is any but the CPU where the benchmark
    measures the CPU only (``cpu_only``: why).

    Example
    -------
    >>> import argparse
    >>> add_device_argument(argparse.ArgumentParser()).parse_args(["--device", "cpu"]).device
    device(type='cpu')
    """

    def device(text):
        """The ``torch.device`` that ``text`` names, if this benchmark can use it here."""
        try:
            chosen = torch.device(text)
        except RuntimeError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if chosen.type != "cpu" and cpu_only:
            raise argparse.ArgumentTypeError(f"{text}: this benchmark measures the CPU only ({cpu_only})")
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available")
        return chosen

    parser.add_argument("--device", default="cpu", type=device, help=f"cpu only: {cpu_only}" if cpu_only else help_text)
    return parser
