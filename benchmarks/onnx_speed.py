#!/usr/bin/env python3
"""onnxruntime against eager PyTorch on the CPU, side by side in one run.

For each model (random weights, 10 s windows every 5 s, 309 classes, exported as the
recipes export and then with ``python -m speechbrain_datar.pretrained.onnx_export``):

* one 10 s window through the embedding model and the head, as each runtime serves it:
  eager on the window's 1001 frames, onnxruntime on the window padded to whole blocks
  (1120 frames for DATAR) with its length given; median of alternating rounds;
* a recording classified from a wav file, hop = window and the default hop (half a
  window): ``StreamingClassifier.classify_file`` against ``OnnxAudioClassifier.classify_file``
  (features included, one window per call, the file decoded as a stream), as real-time factors.

In each precision (``--precisions``: fp32, int8) eager runs the encoder as ``StreamingClassifier`` does in that
precision and onnxruntime runs the graph exported in it (int8: the matrix products quantized by onnxruntime's tool).

    python benchmarks/onnx_speed.py --models datar-tiny,ast --file-models datar-tiny --minutes 10 \
        --precisions fp32,int8 --json docs/onnx_cpu.json
"""

import argparse
import os
import tempfile
import time

import torch

from speechbrain_datar.benchmarking import (
    N_MELS,
    add_device_argument,
    build,
    export_random_head,
    machine,
    table,
    timed,
    write_json,
    write_recording,
)


def export(name, folder, hop_frames, precisions):
    """Model ``name`` (random weights) exported as the recipes do, then to ONNX in each precision
    (``<folder>/onnx_<precision>``); the seconds each ONNX export took."""
    from speechbrain_datar.pretrained.onnx_export import export_onnx

    torch.manual_seed(0)
    export_random_head(build(name).eval(), folder, hop_frames)
    seconds = {}
    for precision in precisions:
        start = time.perf_counter()
        export_onnx(folder, os.path.join(folder, f"onnx_{precision}"), precision=precision)
        seconds[precision] = time.perf_counter() - start
    return seconds


def window_latency(folder, precision, rounds, repeats):
    """Seconds per 10 s window: eager (1001 frames) and onnxruntime (padded to whole blocks), alternating."""
    import numpy as np

    from speechbrain_datar.inference.onnx_runtime import OnnxAudioClassifier
    from speechbrain_datar.inference.precision import quantize_linear_layers
    from speechbrain_datar.pretrained.onnx_export import ClassifierGraph, load_exported

    with tempfile.TemporaryDirectory() as savedir:
        loaded = load_exported(folder, savedir)
    encoder = loaded.mods.embedding_model.encoder
    if precision == "int8":
        encoder = quantize_linear_layers(encoder)
    graph = ClassifierGraph(encoder, loaded.mods.classifier.classifier).eval()
    runtime = OnnxAudioClassifier(os.path.join(folder, f"onnx_{precision}"))
    meta = runtime.meta
    feats = torch.randn(1, 1001, N_MELS)
    padded = np.zeros(
        (
            1,
            meta["graph_frames"] // meta["block_frames"] + (meta["graph_frames"] % meta["block_frames"] > 0),
            meta["block_frames"],
            N_MELS,
        ),
        dtype=np.float32,
    )
    padded.reshape(1, -1, N_MELS)[:, :1001] = feats.numpy()
    inputs = {"blocks": padded, "lengths": np.array([1001 / padded.shape[1] / padded.shape[2]], dtype=np.float32)}
    eager, ort = [], []
    with torch.no_grad():
        for _ in range(rounds):
            eager.append(timed(lambda: graph(feats.reshape(1, 1, 1001, N_MELS), None), torch.device("cpu"), repeats, 1))
            ort.append(timed(lambda: runtime.windows.session.run(None, inputs), torch.device("cpu"), repeats, 1))
    return min(eager), min(ort), padded.shape[1] * padded.shape[2]


def op_profile(folder, precision, runs=5):
    """onnxruntime's own profile of one 10 s window: milliseconds per window by operator type."""
    import collections
    import json

    import numpy as np
    import onnxruntime

    onnx_folder = os.path.join(folder, f"onnx_{precision}")
    with open(os.path.join(onnx_folder, "onnx.json")) as f:
        meta = json.load(f)
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        os.path.join(onnx_folder, "classifier.onnx"), options, providers=["CPUExecutionProvider"]
    )
    blocks = -(-meta["graph_frames"] // meta["block_frames"])
    inputs = {
        "blocks": np.random.randn(1, blocks, meta["block_frames"], N_MELS).astype(np.float32),
        "lengths": np.array([1001 / (blocks * meta["block_frames"])], dtype=np.float32),
    }
    for _ in range(runs):
        session.run(None, inputs)
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    per_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1000 / runs
    return dict(per_op.most_common())


def file_speed(folder, precision, path):
    """Real-time factors of classify_file: eager PyTorch (StreamingClassifier) and onnxruntime."""
    from speechbrain_datar.inference.interfaces import StreamingClassifier
    from speechbrain_datar.inference.onnx_runtime import OnnxAudioClassifier

    with tempfile.TemporaryDirectory() as savedir:
        eager = StreamingClassifier.from_hparams(source=folder, savedir=savedir, precision=precision)
        eager.classify_file(path)
    runtime = OnnxAudioClassifier(os.path.join(folder, f"onnx_{precision}"))
    runtime.classify_file(path)
    return eager.last_realtime_factor, runtime.last_realtime_factor


def measure_model(args, name, hop, folder, path, results):
    """One exported model at one hop: a window in each precision (and its operator profile), and the
    recording classified from its file, appended to ``results``."""
    export_seconds = export(name, folder, hop, args.precisions)
    for precision in args.precisions:
        if hop == args.hops[0]:
            eager, ort, frames = window_latency(folder, precision, args.rounds, args.repeats)
            results["windows"].append(
                dict(
                    model=name,
                    precision=precision,
                    eager_s=eager,
                    onnxruntime_s=ort,
                    onnx_frames=frames,
                    speedup=eager / ort,
                    export_s=export_seconds[precision],
                )
            )
            if args.op_profile:
                ops = op_profile(folder, precision)
                results["op_profiles"].append(dict(model=name, precision=precision, ms_per_window=ops))
            print(
                f"{name} {precision}: one window eager {eager * 1000:.0f} ms, onnxruntime "
                f"{ort * 1000:.0f} ms ({frames} frames), {eager / ort:.2f}x; "
                f"export {export_seconds[precision]:.0f} s",
                flush=True,
            )
        if path and name in args.file_models:
            eager_rt, ort_rt = file_speed(folder, precision, path)
            results["files"].append(
                dict(
                    model=name,
                    precision=precision,
                    hop=hop,
                    minutes=args.minutes,
                    eager_realtime=eager_rt,
                    onnxruntime_realtime=ort_rt,
                    speedup=ort_rt / eager_rt,
                )
            )
            print(
                f"{name} {precision} hop {hop}: {args.minutes:g} min file, eager {eager_rt:.1f}x real "
                f"time, onnxruntime {ort_rt:.1f}x",
                flush=True,
            )


def report(results):
    """The tables: a window per runtime, the files' real-time factors, onnxruntime's time by operator."""
    print()
    print(
        table(
            ["model", "precision", "eager ms / window", "onnxruntime ms / window", "onnxruntime speed-up"],
            [
                [
                    w["model"],
                    w["precision"],
                    f"{w['eager_s'] * 1000:.0f}",
                    f"{w['onnxruntime_s'] * 1000:.0f}",
                    f"{w['speedup']:.2f}x",
                ]
                for w in results["windows"]
            ],
        )
    )
    if results["files"]:
        print()
        print(
            table(
                ["model", "precision", "hop", "eager classify_file", "onnxruntime classify_file", "speed-up"],
                [
                    [
                        f["model"],
                        f["precision"],
                        "window" if f["hop"] == 1001 else f"{f['hop']} frames",
                        f"{f['eager_realtime']:.1f}x real time",
                        f"{f['onnxruntime_realtime']:.1f}x real time",
                        f"{f['speedup']:.2f}x",
                    ]
                    for f in results["files"]
                ],
            )
        )
    for profile in results["op_profiles"]:
        ops = profile["ms_per_window"]
        total = sum(ops.values())
        top = list(ops.items())[:8]
        print()
        print(f"onnxruntime, {profile['model']} {profile['precision']}: time by operator ({total:.0f} ms of kernels)")
        print(table(["operator", "ms / window", "share"], [[k, f"{v:.1f}", f"{v / total:.0%}"] for k, v in top]))


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="datar-tiny,ast", type=lambda s: s.split(","))
    parser.add_argument("--minutes", default=10.0, type=float, help="length of the recording (0: no file)")
    parser.add_argument(
        "--file-models",
        default="datar-tiny",
        type=lambda s: s.split(","),
        help="models that classify the recording too",
    )
    parser.add_argument("--hops", default="1001,501", type=lambda s: [int(h) for h in s.split(",")])
    parser.add_argument("--precisions", default="fp32,int8", type=lambda s: s.split(","))
    parser.add_argument("--rounds", default=3, type=int)
    parser.add_argument("--repeats", default=5, type=int)
    parser.add_argument("--op-profile", action="store_true", help="also onnxruntime's time by operator type")
    parser.add_argument("--json", help="write the measurements here")
    add_device_argument(parser, cpu_only="onnxruntime runs here on its CPU execution provider, eager beside it")
    args = parser.parse_args(argv)
    results = {"machine": machine(args.device), "windows": [], "files": [], "op_profiles": []}
    import onnxruntime

    results["machine"]["onnxruntime"] = onnxruntime.__version__
    print("machine:", results["machine"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_recording(os.path.join(tmp, "recording.wav"), args.minutes) if args.minutes else None
        for name in args.models:
            for hop in args.hops if name in args.file_models else args.hops[:1]:
                measure_model(args, name, hop, os.path.join(tmp, f"{name}_{hop}"), path, results)
    report(results)
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
