#!/usr/bin/env python3
"""Do the read paths agree on real files? Seeked spans, model-rate segments and streams against the whole file.

For each file: the whole sound at the file's rate; spans of 1 s read by seeking at several offsets (the
largest absolute difference from the same span of the whole read); 1 s segments at 16 kHz through
``load_clip`` against the whole file resampled; ``StreamedAudio`` with blocks of 1, 7 and 30 s against
the whole file resampled. ``--seek-after S`` makes reads that start after S seconds seek (the default,
60 s, is the package's: shorter files are always decoded from their start), so that short files exercise
the seek path too.

    python benchmarks/media_reads.py /data/real/*.mp4 /data/real/*.webm --seek-after 1 --json docs/media_reads.json
"""

import argparse
import os
import sys

import av
import numpy as np
import torch

import speechbrain_datar.dataio.decoding as decoding  # noqa: E402
from speechbrain_datar.benchmarking import add_device_argument, machine, table, write_json
from speechbrain_datar.dataio.audio import load_clip  # noqa: E402
from speechbrain_datar.dataio.streaming import StreamedAudio  # noqa: E402


def describe(path):
    """Container, codec, rate, channels of a file's sound."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        return container.format.name.split(",")[0], stream.codec_context.name, stream.rate, stream.channels


def compare(path, offsets=(0.0, 0.013, 0.5, 1.37, 2.5, 4.0, 7.1)):
    """Largest differences between each read path and the whole file."""
    with decoding.open_audio(path) as source:
        whole, rate = source.read(), source.sample_rate
    seconds = whole.shape[1] / rate
    starts = [t for t in offsets if t + 1.0 <= seconds] + [max(0.0, seconds - 1.0)]
    seeked = 0.0
    for start in starts:
        first = int(round(start * rate))
        with decoding.open_audio(path) as source:
            part = source.read(first, first + rate)
        expected = whole[:, first : first + rate]
        seeked = max(seeked, float(np.abs(part - expected).max()) if part.shape == expected.shape else float("inf"))
    resampled = load_clip(path, 16000)
    segments = 0.0
    for start in starts:
        segment = load_clip(path, 16000, start, start + 1.0)
        first = int(round(start * 16000))
        segments = max(segments, float((segment - resampled[first : first + 16000]).abs().max()))
    streamed = 0.0
    for block in (1.0, 7.0, 30.0):
        stream = StreamedAudio(path, 16000, block_seconds=block)
        joined = torch.cat([stream.read(first, first + 4000)[0] for first in range(0, stream.n_samples, 4000)])
        streamed = max(
            streamed,
            float((joined[: stream.n_samples] - resampled).abs().max())
            if stream.n_samples == resampled.shape[0]
            else float("inf"),
        )
    return {
        "seconds": round(seconds, 3),
        "spans": len(starts),
        "seeked_max_abs": seeked,
        "segments_16k_max_abs": segments,
        "streamed_max_abs": streamed,
    }


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument(
        "--seek-after",
        type=float,
        default=decoding.ANCHOR_SECONDS,
        help="reads that start after this many seconds seek (default: the package's)",
    )
    parser.add_argument("--json", default="")
    add_device_argument(parser, cpu_only="media files are decoded on the CPU")
    args = parser.parse_args(argv)
    decoding.ANCHOR_SECONDS = args.seek_after
    results, rows = {"machine": machine(args.device), "seek_after": args.seek_after, "files": {}}, []
    for path in args.files:
        container, codec, rate, channels = describe(path)
        result = dict(compare(path), container=container, codec=codec, rate=rate, channels=channels)
        results["files"][os.path.basename(path)] = result
        rows.append(
            [
                os.path.basename(path),
                f"{codec} in {container}",
                f"{rate}/{channels}",
                result["seconds"],
                f"{result['seeked_max_abs']:.1e}",
                f"{result['segments_16k_max_abs']:.1e}",
                f"{result['streamed_max_abs']:.1e}",
            ]
        )
    print(table(["file", "sound", "rate/ch", "s", "seeked spans", "16 kHz segments", "streamed 1/7/30 s"], rows))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
