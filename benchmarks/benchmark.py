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
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

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
        return self.model(feats).pooler_output.unsqueeze(1)


def frames(seconds):
    return int(round(seconds * FRAMES_PER_SECOND)) if seconds != 10 else 1024


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats, warmup=3):
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
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
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
    with torch.no_grad(), flop_counter() as counter:
        model(feats)
    return counter.get_total_flops() / 2


def _no_grad(model, feats):
    with torch.no_grad():
        return model(feats)


def inference_time(model, feats, device, repeats):
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
        optimizer.zero_grad(set_to_none=True)
        logits = head(model(feats)[:, 0])
        torch.nn.functional.cross_entropy(logits, targets).backward()
        optimizer.step()

    seconds = timed(step, device, repeats)
    model.eval()
    return seconds / feats.shape[0]


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


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
    base = _rss_kib("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current size
        f.write("5")
    with torch.no_grad():
        model(feats)
    return (_rss_kib("VmHWM:") - base) / 1024


def peak_memory_in_subprocess(name, seconds, device):
    command = [sys.executable, os.path.abspath(__file__), "--peak-memory-of", name, str(seconds), "--device", device]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def machine(device):
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
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, rule] + body)


def run(args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    results = {"machine": machine(device), "models": {}, "lengths": {}}
    print("machine:", json.dumps(results["machine"]))
    peak = matmul_gflops(device)
    results["matmul_gflops"] = peak
    print(f"plain fp32 matmul (2048^3): {peak:.1f} GFLOP/s\n")

    names = list(args.models) + (["hf-ast"] if args.hf_ast else [])
    feats = torch.randn(args.batch, frames(10), N_MELS, device=device)
    for name in names:
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
        results["models"][name] = entry
        del model
        gc.collect()
        print(f"measured {name} at 10 s", flush=True)

    ast = results["models"].get("ast")
    rows = []
    for name, e in results["models"].items():
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
    print(f"10 s clips (1024 frames x {N_MELS} mel), batch {args.batch}, {device}:")
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

    compiled = {name: e for name, e in results["models"].items() if "compiled_infer_s_per_clip" in e}
    if compiled:
        print()
        print(f"torch.compile at 10 s, batch {args.batch}, {device}:")
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

    if args.seconds:
        print()
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
                    else timed(lambda model=model, x=x: _no_grad(model, x), device, repeats, warmup=1),
                    "peak_mib": peak_memory_in_subprocess(name, seconds, args.device),
                }
                print(f"measured {name} at {seconds} s", flush=True)
            results["lengths"][name] = per_length
            del model
            gc.collect()
        rows = []
        for name, per_length in results["lengths"].items():
            first, last = per_length[args.seconds[0]], per_length[args.seconds[-1]]
            rows.append(
                [name]
                + [
                    f"{per_length[s]['gmacs']:.1f} / {per_length[s]['infer_s']:.2f} s / "
                    f"{per_length[s]['peak_mib']:.0f} MiB"
                    for s in args.seconds
                ]
                + [
                    f"{last['gmacs'] / first['gmacs']:.1f}x / {last['infer_s'] / first['infer_s']:.1f}x / "
                    f"{last['peak_mib'] / first['peak_mib']:.1f}x"
                ]
            )
        print()
        print("GMACs / inference time / peak memory against clip length (batch 1):")
        growth = f"growth {args.seconds[0]}->{args.seconds[-1]} s (MACs / time / memory)"
        print(table(["model"] + [f"{s} s" for s in args.seconds] + [growth], rows))

    write_json(args.json, results)
    if args.plot and results["lengths"]:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    return results


def plot(results, path):
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
