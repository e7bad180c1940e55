#!/usr/bin/env python3
"""Data loading throughput per worker: how many clips a second one loader process prepares.

Generates 10 s clips as a YouTube download looks (640x360 H.264 at 25 fps, 48 kHz
stereo AAC) and as extracted audio (16 kHz wav), then times, in one process:
audio from the wav, audio from the mp4, audio + 8 frames spread over the clip
(VGGSound/Kinetics, MBT's default), and audio + 32 consecutive frames (EPIC);
frames get the training augmentation (random resized crop to 224, flip). Then the
time to read a 1 s segment at the start, middle and end of a 60-minute video. Then the
same three ways from tar shards of the same clips (``dataio.shards``: audio at 16 kHz,
frames as JPEG at 280 px; 4 fps kept for uniform sampling, every frame of EPIC's
segments), read as training reads them (``ShardStream``: crop, frames, augmentation,
batches). Beside them, the training throughput of the models measured by
``benchmark.py`` (from its JSON) and a stated GPU training rate per model, to read off
how many workers keep training fed.

    python benchmarks/loader.py --json docs/loader_cpu.json
"""

import argparse
import json
import math
import os
import statistics
import tempfile
import time

import numpy as np
import speechbrain as sb
import torch

from speechbrain_datar.benchmarking import add_device_argument, machine, make_clips, table, write_json
from speechbrain_datar.dataio.audio import load_clip  # noqa: E402
from speechbrain_datar.dataio.frames import FrameTransform, frame_times  # noqa: E402
from speechbrain_datar.dataio.shards import ShardStream, open_shard_folder, shard_settings, write_shards  # noqa: E402
from speechbrain_datar.dataio.synthetic import write_video  # noqa: E402
from speechbrain_datar.dataio.video import read_video_frames  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def segment_read_times(folder, minutes=60.0, repeats=5):
    """Milliseconds to read a 1 s segment near the start, the middle and the end of a long video (EPIC's
    reading), and seconds to read its whole audio: seeking keeps a segment's cost independent of its place."""
    path = os.path.join(folder, "long.MP4")
    wav = (0.1 * np.random.default_rng(0).standard_normal(int(16000 * 60 * minutes))).astype(np.float32)
    write_video(path, wav, 16000, np.zeros((int(60 * minutes * 2), 48, 48, 3), np.uint8), fps=2, audio_codec="flac")
    times = {}
    for start in (5.0, 30 * minutes, 60 * minutes - 60):
        runs = []
        for _ in range(repeats):
            begin = time.perf_counter()
            load_clip(path, 16000, start, start + 1.0)
            runs.append(time.perf_counter() - begin)
        times[f"1 s segment at {start:g} s (ms)"] = 1000 * statistics.median(runs)
    begin = time.perf_counter()
    load_clip(path, 16000)
    times["whole audio (s)"] = time.perf_counter() - begin
    return times


def shard_ways(folder, stems):
    """Training readers of tar shards written from the clips: ``{name: (read one epoch, clips)}``."""
    frames = {"size": 224, "sampling": "uniform", "stride": 1, "eval_crops": 1}
    ways = {
        "audio from shards": (None, None, None),
        "audio + 8 frames from shards": (None, None, dict(frames, n_frames=8)),
        "audio + 32 consecutive frames from shards": (4.0, 5.28, dict(frames, n_frames=32, sampling="consecutive")),
    }
    encoders = {"label": sb.dataio.encoder.CategoricalEncoder()}
    encoders["label"].update_from_iterable(["x"])
    readers = {}
    for index, (name, (start, stop, frame_options)) in enumerate(ways.items()):
        entries = {
            os.path.basename(stem): {
                "path": stem + ".mp4",
                "start": start,
                "stop": stop,
                "duration": (stop - start) if start is not None else 10.0,
                "label": "x",
                "fps": 25.0,
                "frame_offset": 0.0,
                "frames_folder": None,
            }
            for stem in stems
        }
        manifest = os.path.join(folder, f"train{index}.json")
        with open(manifest, "w") as f:
            json.dump(entries, f)
        settings = shard_settings(16000, 10.0, frame_options)
        shards_folder = os.path.join(folder, f"shards{index}")
        write_shards({"train": manifest}, shards_folder, settings, shard_megabytes=64, progress=False)
        shards = open_shard_folder(shards_folder, {"train": manifest}, settings)["train"]
        stream = ShardStream(shards, encoders, settings, 10.0, batch_size=8, shuffle_buffer=8)
        readers[name] = lambda stream=stream: [batch for batch in stream]
    return readers


def clips_per_second(load, stems, repeats=2):
    """Clips per second ``load`` reads ``stems`` at (median of ``repeats`` passes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for stem in stems:
            load(stem)
        times.append(time.perf_counter() - start)
    return len(stems) / statistics.median(times)


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument(
        "--model-json",
        default=os.path.join(ROOT, "docs", "benchmark_cpu.json"),
        help="benchmark.py's results, for the training throughput beside",
    )
    parser.add_argument(
        "--seek-minutes", type=float, default=60.0, help="length of the video for the segment reading times (0: skip)"
    )
    parser.add_argument(
        "--gpu-clips-per-s",
        default="DATAR-tiny=400,AST=150,MBT=100",
        help="stated training clips/s of one GPU per model, for the workers it would need",
    )
    parser.add_argument("--json", help="write the measurements here")
    add_device_argument(parser, cpu_only="the data loader's workers decode and batch clips on the CPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one loader worker
    results = {"machine": machine(args.device), "loader_clips_per_s": {}}
    print("machine:", json.dumps(results["machine"]))
    augment = FrameTransform(224, train=True)
    with tempfile.TemporaryDirectory() as tmp:
        stems = make_clips(tmp, args.clips)
        ways = {
            "audio from wav": lambda s: load_clip(s + ".wav", 16000),
            "audio from mp4": lambda s: load_clip(s + ".mp4", 16000),
            "audio + 8 frames from mp4": lambda s: (
                load_clip(s + ".mp4", 16000),
                augment(read_video_frames(s + ".mp4", frame_times(0, 10, 8))),
            ),
            "audio + 32 consecutive frames from mp4": lambda s: (
                load_clip(s + ".mp4", 16000, 4.0, 5.28),
                augment(read_video_frames(s + ".mp4", frame_times(4.0, 5.28, 32, "consecutive", fps=25))),
            ),
        }
        for name, load in ways.items():
            results["loader_clips_per_s"][name] = clips_per_second(load, stems)
            print(f"{name}: {results['loader_clips_per_s'][name]:.1f} clips/s per worker", flush=True)
        for name, read_epoch in shard_ways(tmp, stems).items():
            results["loader_clips_per_s"][name] = clips_per_second(lambda _, read=read_epoch: read(), [None])
            results["loader_clips_per_s"][name] *= len(stems)  # one call reads every clip
            print(f"{name}: {results['loader_clips_per_s'][name]:.1f} clips/s per worker", flush=True)
        rates = results["loader_clips_per_s"]
        results["shards_over_files"] = {
            "audio": rates["audio from shards"] / rates["audio from mp4"],
            "audio + 8 frames": rates["audio + 8 frames from shards"] / rates["audio + 8 frames from mp4"],
            "audio + 32 consecutive frames": rates["audio + 32 consecutive frames from shards"]
            / rates["audio + 32 consecutive frames from mp4"],
        }
        print(
            "shards / files per worker:", json.dumps({k: round(v, 1) for k, v in results["shards_over_files"].items()})
        )
        if args.seek_minutes:
            results["segment_reading"] = segment_read_times(tmp, args.seek_minutes)
            print(f"{args.seek_minutes:g}-minute video:", json.dumps(results["segment_reading"]), flush=True)
    training = {}
    if os.path.isfile(args.model_json):
        with open(args.model_json) as f:
            models = json.load(f)
        training = {name: 1 / e["train_s_per_clip"] for name, e in models["models"].items() if "train_s_per_clip" in e}
        results["training_clips_per_s"] = training
        results["model_machine"] = models["machine"]
    rows = [
        [name, f"{value:.1f}"] + [f"{training[m] / value:.2f}" for m in training]
        for name, value in results["loader_clips_per_s"].items()
    ]
    print()
    print(
        "10 s clips; workers needed = training clips/s / loader clips/s per worker "
        f"(training: {', '.join(f'{m} {v:.2f} clips/s' for m, v in training.items())}, from {args.model_json}):"
    )
    print(table(["loading", "clips/s per worker"] + [f"workers for {m}" for m in training], rows))
    gpu = dict(item.split("=") for item in args.gpu_clips_per_s.split(","))
    results["stated_gpu_training_clips_per_s"] = {model: float(rate) for model, rate in gpu.items()}
    rows = []
    for model, rate in results["stated_gpu_training_clips_per_s"].items():
        kind = "audio + 8 frames" if model.startswith("MBT") else "audio"
        files, shards = rates[f"{kind} from mp4"], rates[f"{kind} from shards"]
        rows.append([model, f"{rate:g}", kind, f"{math.ceil(rate / files)}", f"{math.ceil(rate / shards)}"])
    results["gpu_workers_needed"] = {row[0]: {"files": int(row[3]), "shards": int(row[4])} for row in rows}
    print()
    print("Loader workers one GPU would need at a stated training rate (not measured: no GPU here):")
    print(table(["model", "stated GPU clips/s", "reads", "workers from mp4 files", "workers from shards"], rows))
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
