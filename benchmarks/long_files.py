#!/usr/bin/env python3
"""Memory and speed of the exported model on long recordings.

Exports a DATAR of each preset (random weights; 10 s windows, 5 s hop, as the
recipes export them) and classifies waveforms of each length with
``EncoderClassifier.classify_batch``. Every point runs in a fresh process and
reports the peak resident memory above the loaded model and the waveform, and
the real-time factor (audio seconds per second of computation).

``--whole`` also measures the previous way for comparison: the features of the
whole file at once and every window through the encoder in one call.

``--files`` classifies wav files on disk with ``classify_file`` instead: the way
``EncoderClassifier`` does it (the whole file decoded, then its windows) against
``StreamingClassifier``'s stream (decoded block by block while the windows are
embedded), for each hop (``--hops``, frames; 1001 = the window, no overlap) and
number of windows per encoder call (``--max-windows``). Memory is then the peak
above the loaded model, waveform included.

    python benchmarks/long_files.py --presets micro,tiny --minutes 10,60 --json docs/long_files_cpu.json
    python benchmarks/long_files.py --files --presets tiny --minutes 10,60 --hops 1001,501 --max-windows 8,16
    python benchmarks/long_files.py --files --presets tiny --minutes 60 --hops 1001,501 --ways streamed \
        --precisions fp32,int8                    # each precision beside fp32, in one run

``--precisions`` runs the encoder in each precision (``speechbrain_datar.inference.precision``; a precision the
CPU cannot run falls back to fp32, which the output says).

Every point also times, in its own process after warming each shape, the exported encoder alone (its runner, in
the point's precision) on one window of the exported length and on one of the next length the encoder's grid
divides (its total stride), and gives the streamed (or chunked) cost per window beside them, with their ratios:
what the streaming glue costs, and what a window aligned to the grid would save. The JSON records the CPU's
model and instruction sets.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from speechbrain_datar.benchmarking import (
    SAMPLE_RATE,
    add_device_argument,
    export_random_head,
    machine,
    rss_kib,
    table,
    write_json,
    write_recording,
)


def export(preset, folder, hop_frames=501, max_windows=8):
    """A randomly initialised DATAR of ``preset``, exported as the recipes do."""
    from speechbrain_datar.lobes.models.datar import DATAR

    torch.manual_seed(0)
    return export_random_head(DATAR(preset, reference_frames=1001).eval(), folder, hop_frames, max_windows=max_windows)


def encoder_alone_ms(windows, frames, repeats=7):
    """Median milliseconds of the exported encoder alone (through its precision runner) on one window of ``frames``
    frames of features, after two warming calls of that shape."""
    feats = torch.randn(1, frames, windows.encoder.n_mels)
    with torch.no_grad():
        for _ in range(2):
            windows.runner(feats, None)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            windows.runner(feats, None)
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def aligned_frames(encoder, frames):
    """The next number of frames at or above ``frames`` that the encoder's grid (its total stride) divides."""
    stride = getattr(encoder, "total_stride", (1, 1))[1]
    return -(-frames // stride) * stride


def measure(folder, minutes, way, path=None, precision="fp32"):
    """Peak memory (MiB) above the loaded model (and, for ``chunked`` and ``whole``, the waveform) and the
    real-time factor, in this (fresh) process. ``way``: ``chunked`` / ``whole`` (a waveform in memory),
    ``file`` (``EncoderClassifier.classify_file``) or ``streamed`` (``StreamingClassifier.classify_file``)."""
    import gc

    from speechbrain.inference.classifiers import EncoderClassifier

    from speechbrain_datar.inference.interfaces import StreamingClassifier

    interface = StreamingClassifier if way == "streamed" else EncoderClassifier
    before_model = rss_kib("VmRSS:")
    classifier = interface.from_hparams(source=folder, savedir=os.path.join(folder, ".loaded"))
    classifier.mods.embedding_model.set_precision(precision)
    with torch.no_grad():  # one short call: the model in its precision (the int8 copy is made at the first call)
        classifier.classify_batch(0.1 * torch.randn(1, SAMPLE_RATE))
    whole = way == "whole"
    wav = 0.1 * torch.randn(1, int(minutes * 60 * SAMPLE_RATE)) if way in ("chunked", "whole") else None
    windows = classifier.mods.embedding_model
    gc.collect()
    base = rss_kib("VmRSS:")
    model_mib = (base - before_model) / 1024 - (0 if wav is None else wav.numel() * 4 / 2**20)
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current size
        f.write("5")
    start = time.perf_counter()
    with torch.no_grad():
        if whole:  # the previous way: all features, then all windows at once
            from speechbrain_datar.inference.sliding_window import sliding_window_embeddings

            feats = windows.normalizer(windows.features(wav), torch.ones(1))
            embeddings, valid = sliding_window_embeddings(
                windows.encoder, feats, None, windows.window_frames, windows.hop_frames
            )
            classifier.mods.classifier.classifier(embeddings)
        elif wav is not None:
            classifier.classify_batch(wav)
        else:
            classifier.classify_file(path)
    seconds = time.perf_counter() - start
    from speechbrain_datar.inference.sliding_window import windows_per_clip

    total_frames = int(minutes * 60 * 100) + 1  # 10 ms frames of a centred STFT
    n_windows = int(windows_per_clip(torch.tensor(total_frames), windows.window_frames, windows.hop_frames))
    exported, aligned = windows.window_frames, aligned_frames(windows.encoder, windows.window_frames)
    per_window = 1000 * seconds / n_windows
    alone = {frames: encoder_alone_ms(windows, frames) for frames in {exported, aligned}}
    return {
        "windows": n_windows,
        "ms_per_window": per_window,
        "encoder_alone_ms": {"exported": alone[exported], "aligned": alone[aligned]},
        "window_frames": {"exported": exported, "aligned": aligned},
        "per_window_over_encoder_exported": per_window / alone[exported],
        "per_window_over_encoder_aligned": per_window / alone[aligned],
        "peak_mib": (rss_kib("VmHWM:") - base) / 1024,
        "model_mib": model_mib,
        "seconds": seconds,
        "realtime": minutes * 60 / seconds,
        "precision": precision,
        "precision_run": windows.runner.running,
    }


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="micro,tiny", type=lambda s: s.split(","))
    parser.add_argument("--minutes", default="10,60", type=lambda s: [float(m) for m in s.split(",")])
    parser.add_argument("--whole", action="store_true", help="also measure whole-file features and all windows at once")
    parser.add_argument("--whole-minutes", default="10,30", type=lambda s: [float(m) for m in s.split(",")])
    parser.add_argument("--files", action="store_true", help="classify wav files: whole-file decoding vs streamed")
    parser.add_argument("--hops", default="501", type=lambda s: [int(h) for h in s.split(",")])
    parser.add_argument("--max-windows", default="8", type=lambda s: [int(m) for m in s.split(",")])
    parser.add_argument("--precisions", default="fp32", type=lambda s: s.split(","), help="fp32, bf16, int8")
    parser.add_argument("--ways", default="file,streamed", type=lambda s: s.split(","), help="with --files")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=4, metavar=("FOLDER", "MINUTES", "WAY", "PATH"), help=argparse.SUPPRESS)
    add_device_argument(parser, cpu_only="its figure is the process's peak resident memory, and streaming's CPU time")
    args = parser.parse_args(argv)
    if args.measure:
        folder, minutes, way, path = args.measure
        print(json.dumps(measure(folder, float(minutes), way, path, args.precision)))
        return None
    if args.files:
        return measure_files(args)
    results = {"machine": machine(args.device), "points": []}
    print("machine:", json.dumps(results["machine"]))
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            folder = export(preset, os.path.join(tmp, preset))
            runs = [(m, False) for m in args.minutes] + ([(m, True) for m in args.whole_minutes] if args.whole else [])
            for minutes, whole in runs:
                way = "whole" if whole else "chunked"
                command = [sys.executable, os.path.abspath(__file__), "--measure", folder, str(minutes), way, "-"]
                out = (
                    subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                )
                point = dict(json.loads(out), preset=preset, minutes=minutes, way="whole file" if whole else "chunked")
                results["points"].append(point)
                print(
                    f"{preset} {minutes:g} min ({point['way']}): {point['peak_mib']:.0f} MiB, "
                    f"{point['realtime']:.1f}x real time",
                    flush=True,
                )
    rows = [
        [p["preset"], p["way"], f"{p['minutes']:g} min", f"{p['peak_mib']:.0f}", f"{p['realtime']:.1f}x"]
        for p in results["points"]
    ]
    print()
    print(table(["preset", "embedding", "file", "peak MiB above model + waveform", "real time"], rows))
    for preset in args.presets:
        chunked = [p for p in results["points"] if p["preset"] == preset and p["way"] == "chunked"]
        if len(chunked) > 1:
            first, last = chunked[0], chunked[-1]
            print(
                f"{preset}: peak at {last['minutes']:g} min / at {first['minutes']:g} min = "
                f"{last['peak_mib'] / first['peak_mib']:.2f}"
            )
    write_json(args.json, results)
    return results


def measure_files(args):
    """``classify_file`` on wav files: ``EncoderClassifier`` (whole file) against ``StreamingClassifier`` (streamed)."""
    results = {"machine": machine(args.device), "files": []}
    print("machine:", json.dumps(results["machine"]))
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: write_recording(os.path.join(tmp, f"{m:g}min.wav"), m) for m in args.minutes}
        for preset in args.presets:
            for hop in args.hops:
                for max_windows in args.max_windows:
                    folder = export(preset, os.path.join(tmp, f"{preset}_{hop}_{max_windows}"), hop, max_windows)
                    for minutes, way, precision in itertools.product(args.minutes, args.ways, args.precisions):
                        command = [
                            sys.executable,
                            os.path.abspath(__file__),
                            "--measure",
                            folder,
                            str(minutes),
                            way,
                            paths[minutes],
                            f"--precision={precision}",
                        ]
                        out = subprocess.run(command, capture_output=True, text=True, check=True)
                        point = dict(
                            json.loads(out.stdout.strip().splitlines()[-1]),
                            preset=preset,
                            hop=hop,
                            max_windows=max_windows,
                            minutes=minutes,
                            way=way,
                            windows_per_call=max_windows if way == "file" else 1,
                        )  # CPU default
                        results["files"].append(point)
                        print(
                            f"{preset} hop {hop} x{max_windows} {minutes:g} min {way} {point['precision_run']}: "
                            f"{point['peak_mib']:.0f} MiB, "
                            f"{point['realtime']:.1f}x real time",
                            flush=True,
                        )
    rows = [
        [
            p["preset"],
            "window" if p["hop"] == 1001 else f"{p['hop']} frames",
            p["windows_per_call"],
            f"{p['minutes']:g} min",
            "EncoderClassifier (whole file)" if p["way"] == "file" else "StreamingClassifier (streamed)",
            p["precision_run"]
            if p["precision_run"] == p["precision"]
            else f"{p['precision_run']} ({p['precision']} asked)",
            f"{p['model_mib']:.0f}",
            f"{p['peak_mib']:.0f}",
            f"{p['realtime']:.1f}x",
            f"{p['ms_per_window']:.0f}",
            f"{p['encoder_alone_ms']['exported']:.0f} ({p['window_frames']['exported']})",
            f"{p['encoder_alone_ms']['aligned']:.0f} ({p['window_frames']['aligned']})",
            f"{p['per_window_over_encoder_exported']:.2f} / {p['per_window_over_encoder_aligned']:.2f}",
        ]
        for p in results["files"]
    ]
    print()
    print(
        table(
            [
                "preset",
                "hop",
                "windows per call",
                "file",
                "classify_file",
                "precision",
                "model MiB (after its first call)",
                "peak MiB above model",
                "real time",
                "ms / window",
                "encoder alone, exported window (frames)",
                "encoder alone, aligned window (frames)",
                "per window / encoder alone (exported / aligned)",
            ],
            rows,
        )
    )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
