#!/usr/bin/env python3
"""Where a 10 s window's time goes, part by part, in each inference precision.

Times one window (batch 1, features given) of DATAR-tiny and AST by part: the stem, window attention (L/S
blocks), deformable attention split into offset generation, bilinear sampling of the keys, the relative-position
bias and the rest (projections and the attention itself), MLPs, LayerNorms, patch merging, and what is left
(residual additions, masking, reshapes: "framework and glue"). Each part's milliseconds and share, per
precision: fp32, bf16 (autocast; emulated, slower, on a CPU without bf16 instructions, which the output says)
and int8 (the linear layers dynamically quantized, as ``precision="int8"`` runs them). The whole window's
GFLOP/s against a plain fp32 matmul's, measured in the same run, closes each column.

    python benchmarks/profile_parts.py --json docs/profile_parts_cpu.json
"""

import argparse
import collections
import contextlib
import time

import torch

from speechbrain_datar.benchmarking import (
    add_device_argument,
    build,
    count_macs,
    frames,
    machine,
    matmul_gflops,
    table,
    write_json,
)

PARTS = {  # class name -> part
    "LearnableInputAdaptor": "stem",
    "RandomPerturbation": "stem",
    "PatchEmbedding": "stem",
    "PatchMerging": "patch merging",
    "WindowAttention": "window attention (L/S)",
    "MultiHeadSelfAttention": "attention",
    "DeformableAttention": "deformable: projections + attention",
    "OffsetGenerator": "deformable: offset generation",
    "FeedForward": "MLP",
    "LayerNorm": "LayerNorm",
}


class PartTimer:
    """Accumulates each part's exclusive time: a part's time less that of the parts called inside it."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.stack = []

    @contextlib.contextmanager
    def part(self, name):
        """A context that adds its time to part ``name``."""
        start = time.perf_counter()
        self.stack.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            inner = self.stack.pop()
            self.seconds[name] += elapsed - inner
            if self.stack:
                self.stack[-1] += elapsed

    def wrap(self, owner, attribute, name):
        """Times every call of ``owner.attribute`` as part ``name``."""
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            """The original call, its time counted under the part's name."""
            with self.part(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def instrument(model, timer):
    """Wraps the parts of ``model`` (a DATAR or an AST, possibly quantized) in ``timer``."""
    import speechbrain_datar.nnet.deformable_attention as deformable

    for name, module in model.named_modules():
        kind = type(module).__name__
        if name == "patch_embed":  # AST's stem
            timer.wrap(module, "forward", "stem")
        elif PARTS.get(kind):
            timer.wrap(module, "forward", PARTS[kind])
        if kind == "DeformableAttention":
            timer.wrap(module, "_relative_position_bias", "deformable: relative-position bias")
    sample = deformable.bilinear_sample
    timer.wrap(deformable, "bilinear_sample", "deformable: bilinear sampling")
    return lambda: setattr(deformable, "bilinear_sample", sample)


def profile(name, precision, repeats):
    """``{part: seconds per window}`` and the total, for model ``name`` in ``precision``."""
    from speechbrain_datar.inference.precision import quantize_linear_layers

    torch.manual_seed(0)
    model = build(name).eval()
    if precision == "int8":
        model = quantize_linear_layers(model).eval()
    feats = torch.randn(1, frames(10), 128)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with torch.no_grad(), context:
        for _ in range(2):
            model(feats)
        totals = []
        for _ in range(repeats):  # the whole window, not instrumented
            start = time.perf_counter()
            model(feats)
            totals.append(time.perf_counter() - start)
        timer = PartTimer()
        restore = instrument(model, timer)
        try:
            for _ in range(repeats):
                with timer.part("framework and glue"):
                    model(feats)
        finally:
            restore()
    total = sorted(totals)[len(totals) // 2]
    parts = {part: seconds / repeats for part, seconds in timer.seconds.items()}
    return parts, total


def feature_seconds(repeats):
    """Seconds of SpeechBrain's Fbank (128 mel bins, 10 ms hop) on 10 s of 16 kHz audio: float32 in every
    precision, computed window by window before the encoder."""
    from speechbrain.lobes.features import Fbank

    fbank = Fbank(n_mels=128)
    wav = torch.randn(1, 160000)
    with torch.no_grad():
        fbank(wav)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fbank(wav)
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    """Command line."""
    from speechbrain_datar.inference.precision import bf16_supported

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="datar-tiny,ast", type=lambda s: s.split(","))
    parser.add_argument("--precisions", default="fp32,bf16,int8", type=lambda s: s.split(","))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the measurements here")
    add_device_argument(
        parser, cpu_only="each part is timed by the CPU's clock around its call, and int8 is a CPU path"
    )
    args = parser.parse_args(argv)
    cpu = args.device
    info = dict(machine(cpu), bf16_native=bf16_supported(cpu))
    results = {"machine": info, "matmul_gflops": matmul_gflops(cpu), "models": {}}
    results["features_s"] = feature_seconds(args.repeats)
    print("machine:", info, flush=True)
    for name in args.models:
        torch.manual_seed(0)
        macs = count_macs(build(name).eval(), torch.randn(1, frames(10), 128))
        entry = {"gmacs": macs / 1e9, "precisions": {}}
        for precision in args.precisions:
            parts, total = profile(name, precision, args.repeats)
            entry["precisions"][precision] = {"total_s": total, "parts_s": parts, "gflops": 2 * macs / total / 1e9}
            print(f"{name} {precision}: {total * 1000:.0f} ms", flush=True)
        results["models"][name] = entry
        names = sorted({p for v in entry["precisions"].values() for p in v["parts_s"]})
        rows = []
        for part in names:
            row = [part]
            for precision in args.precisions:
                measured = entry["precisions"][precision]
                seconds = measured["parts_s"].get(part, 0.0)
                row.append(f"{seconds * 1000:.1f} ({100 * seconds / sum(measured['parts_s'].values()):.0f}%)")
            rows.append(row)
        rows.append(
            ["whole window, not instrumented (ms)"]
            + [f"{entry['precisions'][p]['total_s'] * 1000:.0f}" for p in args.precisions]
        )
        rows.append(
            ["MACs per second, against an fp32 matmul's"]
            + [f"{entry['precisions'][p]['gflops'] / results['matmul_gflops']:.0%}" for p in args.precisions]
        )
        rows.append(
            ["(before the encoder: features, float32)"]
            + [f"{results['features_s'] * 1000:.1f}" for p in args.precisions]
        )
        print()
        print(
            f"{name}, {macs / 1e9:.2f} GMACs per 10 s window, batch 1; ms per window (share of the instrumented total)"
        )
        print(
            table(
                ["part"]
                + [f"{p}{'' if p != 'bf16' or info['bf16_native'] else ' (emulated)'}" for p in args.precisions],
                rows,
            )
        )
        print()
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
