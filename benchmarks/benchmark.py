#!/usr/bin/env python3
"""DATAR vs the AST baseline, side by side, on the same machine and the same input.

Prints, in one run: parameters, MACs (``torch.utils.flop_counter``), inference
throughput, training-step throughput and peak inference memory for the DATAR
presets and AST, at 10 s and at longer clips, with DATAR/AST ratios; and how
close a DATAR forward pass comes to the machine (achieved GFLOP/s against a plain
matmul's, measured in the same run).

    python benchmarks/benchmark.py                          # CPU, 10/20/40/60 s
    python benchmarks/benchmark.py --device cuda --json results.json --plot results.png
    python benchmarks/benchmark.py --hf-ast                 # also transformers' ASTModel, if installed
    python benchmarks/benchmark.py --compile --seconds ""   # also torch.compile (slow to compile)
    python benchmarks/benchmark.py --models datar-tiny,datar-tiny-r2,datar-tiny-r4,ast --no-train
                                                            # sub-sampled offsets (offset_strides r = 2, 4)

Each peak-memory point is measured in a fresh process (CPU: peak resident memory
above the process's state after building the model and the input; CUDA: peak
allocated memory), so allocations of one measurement do not hide another's.
"""

import argparse
import gc
import json
import os
import subprocess
import sys

import torch

from speechbrain_datar.benchmarking import (
    MODELS,
    N_MELS,
    build,
    compiled_inference,
    count_macs,
    frames,
    inference_time,
    machine,
    matmul_gflops,
    rss_kib,
    table,
    timed,
    train_step_time,
    write_json,
)


def measure_peak_memory(name, seconds, device):
    """Peak inference memory (MiB) above model + input, measured in this (fresh) process."""
    torch.manual_seed(0)
    device = torch.device(device)
    model = build(name, seconds).to(device).eval()
    feats = torch.randn(1, frames(seconds), N_MELS, device=device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            model(feats)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = rss_kib("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current size
        f.write("5")
    with torch.no_grad():
        model(feats)
    return (rss_kib("VmHWM:") - base) / 1024


def peak_memory_in_subprocess(name, seconds, device):
    """Peak inference memory (MiB) of ``name`` at ``seconds``, measured in a fresh process."""
    command = [sys.executable, os.path.abspath(__file__), "--peak-memory-of", name, str(seconds), "--device", device]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def measure_at_10_seconds(args, device):
    """Parameters, MACs, inference and training time (and, with ``--compile``, torch.compile's) per model."""
    models = {}
    feats = torch.randn(args.batch, frames(10), N_MELS, device=device)
    for name in list(args.models) + (["hf-ast"] if args.hf_ast else []):
        model = build(name).to(device).eval()
        entry = {
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gmacs": count_macs(model, feats[:1]) / 1e9,
            "infer_s_per_clip": inference_time(model, feats, device, args.repeats) / args.batch,
        }
        entry["gflops_achieved"] = 2 * entry["gmacs"] / entry["infer_s_per_clip"]
        if name != "hf-ast" and not args.no_train:
            entry["train_s_per_clip"] = train_step_time(
                model,
                feats[: args.train_batch].repeat(max(1, args.train_batch // feats.shape[0]), 1, 1)[: args.train_batch],
                device,
                max(1, args.repeats // 2),
            )
        if args.compile and name != "hf-ast":
            entry.update(compiled_inference(model, feats, device, args.repeats))
        models[name] = entry
        del model
        gc.collect()
        print(f"measured {name} at 10 s", flush=True)
    return models


def report_10_seconds(models, peak, batch, device):
    """The table of models at 10 s, with ratios to AST (added to each entry), and torch.compile's if measured."""
    ast = models.get("ast")
    rows = []
    for name, e in models.items():
        macs_ratio = e["gmacs"] / ast["gmacs"] if ast else float("nan")
        time_ratio = e["infer_s_per_clip"] / ast["infer_s_per_clip"] if ast else float("nan")
        e.update(macs_ratio_vs_ast=macs_ratio, time_ratio_vs_ast=time_ratio)
        rows.append(
            [
                name,
                f"{e['params_m']:.2f}",
                f"{e['gmacs']:.2f}",
                f"{macs_ratio:.3f}",
                f"{e['infer_s_per_clip']:.3f}",
                f"{1 / e['infer_s_per_clip']:.2f}",
                f"{time_ratio:.3f}",
                f"{time_ratio / macs_ratio:.2f}",
                f"{e['gflops_achieved']:.0f} ({100 * e['gflops_achieved'] / peak:.0f}%)",
                f"{1 / e['train_s_per_clip']:.2f}" if "train_s_per_clip" in e else "-",
            ]
        )
    print()
    print(f"10 s clips (1024 frames x {N_MELS} mel), batch {batch}, {device}:")
    print(
        table(
            [
                "model",
                "params (M)",
                "GMACs",
                "MACs/AST",
                "infer s/clip",
                "infer clips/s",
                "time/AST",
                "time ratio / MACs ratio",
                "GFLOP/s (% of matmul)",
                "train clips/s",
            ],
            rows,
        )
    )
    compiled = {name: e for name, e in models.items() if "compiled_infer_s_per_clip" in e}
    if compiled:
        print()
        print(f"torch.compile at 10 s, batch {batch}, {device}:")
        print(
            table(
                ["model", "eager s/clip", "compiled s/clip", "speed-up", "compile time (s)", "max abs diff vs eager"],
                [
                    [
                        name,
                        f"{e['infer_s_per_clip']:.3f}",
                        f"{e['compiled_infer_s_per_clip']:.3f}",
                        f"{e['infer_s_per_clip'] / e['compiled_infer_s_per_clip']:.2f}x",
                        f"{e['compile_s']:.0f}",
                        f"{e['compiled_max_abs_diff']:.1e}",
                    ]
                    for name, e in compiled.items()
                ],
            )
        )


def measure_lengths(args, device):
    """MACs, inference time and peak memory (each in a fresh process) per model and clip length."""
    lengths = {}
    for name in list(args.models) + (["hf-ast"] if args.hf_ast else []):
        model = build(name).to(device).eval()
        per_length = {}
        for seconds in args.seconds:
            if name == "hf-ast":
                model = build(name, seconds).to(device).eval()
            x = torch.randn(1, frames(seconds), N_MELS, device=device)
            repeats = args.repeats if seconds <= 10 else max(1, args.repeats // 3)
            per_length[seconds] = {
                "gmacs": count_macs(model, x) / 1e9,
                "infer_s": inference_time(model, x, device, repeats)
                if seconds <= 20
                else timed(lambda model=model, x=x: inference_time(model, x, device, 1), device, repeats, warmup=1),
                "peak_mib": peak_memory_in_subprocess(name, seconds, args.device),
            }
            print(f"measured {name} at {seconds} s", flush=True)
        lengths[name] = per_length
        del model
        gc.collect()
    return lengths


def report_lengths(lengths, seconds):
    """The table of MACs, time and memory against clip length, with their growth."""
    rows = []
    for name, per_length in lengths.items():
        first, last = per_length[seconds[0]], per_length[seconds[-1]]
        rows.append(
            [name]
            + [
                f"{per_length[s]['gmacs']:.1f} / {per_length[s]['infer_s']:.2f} s / {per_length[s]['peak_mib']:.0f} MiB"
                for s in seconds
            ]
            + [
                f"{last['gmacs'] / first['gmacs']:.1f}x / {last['infer_s'] / first['infer_s']:.1f}x / "
                f"{last['peak_mib'] / first['peak_mib']:.1f}x"
            ]
        )
    print()
    print("GMACs / inference time / peak memory against clip length (batch 1):")
    growth = f"growth {seconds[0]}->{seconds[-1]} s (MACs / time / memory)"
    print(table(["model"] + [f"{s} s" for s in seconds] + [growth], rows))


def run(args):
    """The whole benchmark: the machine, each model at 10 s, then at each length; returns the results."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    results = {"machine": machine(device), "models": {}, "lengths": {}}
    print("machine:", json.dumps(results["machine"]))
    peak = matmul_gflops(device)
    results["matmul_gflops"] = peak
    print(f"plain fp32 matmul (2048^3): {peak:.1f} GFLOP/s\n")
    results["models"] = measure_at_10_seconds(args, device)
    report_10_seconds(results["models"], peak, args.batch, device)
    if args.seconds:
        print()
        results["lengths"] = measure_lengths(args, device)
        report_lengths(results["lengths"], args.seconds)
    write_json(args.json, results)
    if args.plot and results["lengths"]:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    return results


def plot(results, path):
    """MACs, time and memory against clip length, one line per model, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
    for name, per_length in results["lengths"].items():
        seconds = sorted(per_length, key=float)
        ax_time.plot(seconds, [per_length[s]["infer_s"] for s in seconds], marker="o", label=name)
        ax_mem.plot(seconds, [per_length[s]["peak_mib"] for s in seconds], marker="o", label=name)
    for ax, label in ((ax_time, "inference time per clip (s)"), (ax_mem, "peak inference memory (MiB)")):
        ax.set_xlabel("clip length (s)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    m = results["machine"]
    fig.suptitle(f"DATAR vs AST on {m['device']} ({m['cpu_cores']} cores, torch {m['torch']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--models", default=",".join(MODELS), type=lambda s: [m for m in s.split(",") if m])
    parser.add_argument(
        "--seconds", default="10,20,40,60", type=lambda s: [float(x) if "." in x else int(x) for x in s.split(",") if x]
    )
    parser.add_argument("--batch", type=int, default=1, help="clips per inference call at 10 s")
    parser.add_argument("--train-batch", type=int, default=2, help="clips per training step")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median); fewer for long clips")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    parser.add_argument("--hf-ast", action="store_true", help="also time transformers' ASTModel (same configuration)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of each model at 10 s")
    parser.add_argument("--json", help="write all measurements to this JSON file")
    parser.add_argument("--plot", help="write time and memory against clip length to this PNG")
    parser.add_argument("--peak-memory-of", nargs=2, metavar=("MODEL", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_memory_of:
        name, seconds = args.peak_memory_of
        print(measure_peak_memory(name, float(seconds), args.device))
        return None
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return run(args)


if __name__ == "__main__":
    main()
