#!/usr/bin/env python3
"""Peak memory and outcome of each hostile input of the reports, at their real sizes, each in a fresh process.

An odd-rate WAV (44,101 Hz), a 1 Hz and a 9,999,991 Hz WAV, a download cut after 60% of its bytes (read in
preparation and read past its end as training would), an all-black 8176 x 8176 H.264 file (preparation with
frames, and 8 frames read), a 2 KB checkpoint declaring a 1.4 G-element tensor through a stride-0 view, and
a 3.4 MB zip that would unpack to 3.4 GB; damaged and hostile shards (NaN audio and a 10^12-sample ``.npy`` header with
their SHA-256 recomputed, JSON nested 20,000 deep, a member declared at 6 GiB in a sparse file, a record claiming
10^12 clips, a million tiny members, a compressed shard padded to its size) read as training, evaluation and
``check`` read them; files whose timestamps jump by 10 hours or 1 hour or start at 2^40 (preparation's inspection,
``load_clip``, and the stream ``classify_file`` reads); an ``esc50.csv`` with a 100 MB line of 50 M cells or a
100 MB field; an ``onnx.json`` declaring a 1 GHz rate; a clip that is a link to ``/dev/zero``. The figure is the
whole process's peak resident memory (torch and SpeechBrain imported: about 0.55 GB before any input is read).

    python benchmarks/hostile_inputs.py --json docs/hostile_inputs_cpu.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from speechbrain_datar.benchmarking import add_device_argument, table, write_json
from speechbrain_datar.testing.hostile_media import (
    make_esc50_csv,
    make_huge_frame_video,
    make_onnx_meta,
    make_retimed,
    make_stride_zero_checkpoint,
    make_truncated_download,
    make_wav,
    make_zip_bomb_checkpoint,
)
from speechbrain_datar.testing.hostile_shards import (
    compress_padded,
    declare_huge_member,
    fix_record,
    make_shards,
    members_of,
    npy,
    npy_header_only,
    tamper,
    write_members,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEN_HOURS, ONE_HOUR = 36000.0, 3600.0


def shard_cases(folder):
    """``(name, operation, shards folder, manifest)`` of each shard case, each in a folder of its own."""
    import tarfile

    import numpy as np

    cases = []

    def fresh(name):
        """New shards in their own folder: manifests, folder, the tar and its index."""
        manifests, shards = make_shards(os.path.join(folder, name))
        return manifests, shards, os.path.join(shards, "train-000000.tar"), os.path.join(shards, "train-000000.json")

    manifests, shards, _, _ = fresh("nan")
    tamper(shards, "train", "train1", audio=npy(np.full(8000, np.nan, dtype=np.float32)))
    cases.append(("shard: NaN clip, its SHA-256 recomputed", "train", shards, manifests["train"]))
    manifests, shards, _, _ = fresh("header")
    tamper(shards, "train", "train1", audio=npy_header_only((10**12,)))
    cases.append(("shard: .npy header of 10^12 samples", "train", shards, manifests["train"]))
    manifests, shards, _, _ = fresh("nested")
    tamper(shards, "train", "train1", raw_json=b'{"id": ' + b"[" * 20000 + b"]" * 20000 + b"}")
    cases.append(("shard: JSON nested 20,000 deep", "train", shards, manifests["train"]))
    for split in ("train", "test"):
        manifests, shards, _, _ = fresh(f"sparse_{split}")
        declare_huge_member(os.path.join(shards, f"{split}-000000.tar"))
        operation = "train" if split == "train" else "evaluate"
        cases.append((f"shard: member declared at 6 GiB (sparse), {split}", operation, shards, manifests[split]))
    manifests, shards, _, record = fresh("claims")
    fix_record(os.path.join(shards, "train-000000.tar"), record, clips=10**12)
    cases.append(("shard: record claiming 10^12 clips", "train", shards, manifests["train"]))
    manifests, shards, path, record = fresh("million")
    write_members(path, members_of(path) + [(tarfile.TarInfo(f"x{i:08d}"), b"") for i in range(1_000_000)], record)
    cases.append(("shard: a million tiny members", "train", shards, manifests["train"]))
    cases.append(("the same, check", "check", shards, manifests["train"]))
    manifests, shards, _, _ = fresh("gzip")
    compress_padded(os.path.join(shards, "test-000000.tar"))
    cases.append(("shard: compressed, padded to its size", "evaluate", shards, manifests["test"]))
    return cases


def media_cases(folder):
    """``(name, kind, path)`` of the timeline, CSV, metadata and link cases (run by ``speechbrain_datar.testing.hostile_media``)."""
    cases = []
    for name, codec, shift in (
        ("m4a, timestamps jump 10 h", "aac", lambda i, p: int(TEN_HOURS / p.time_base) if i >= 20 else 0),
        ("mka, timestamps jump 10 h", "vorbis", lambda i, p: int(TEN_HOURS / p.time_base) if i >= 20 else 0),
        ("webm, timestamps jump 10 h", "libopus", lambda i, p: int(TEN_HOURS / p.time_base) if i >= 20 else 0),
        ("mka, timestamps jump 1 h", "vorbis", lambda i, p: int(ONE_HOUR / p.time_base) if i >= 20 else 0),
        ("webm, first timestamp 2^40", "libopus", lambda i, p: 2**40),
    ):
        extension = name.split(",")[0]
        path = make_retimed(
            os.path.join(folder, name.replace(" ", "_").replace(",", "") + "." + extension), codec, shift
        )
        cases += [(name, kind, path) for kind in ("inspect_clip", "load_clip", "classify_stream")]
    cases.append(
        (
            "esc50.csv, a 100 MB line of 50 M cells",
            "esc50_csv",
            make_esc50_csv(os.path.join(folder, "cells", "esc50.csv"), "," * 50_000_000),
        )
    )
    huge_field = "x.wav,1,0," + "d" * 100_000_000 + ",True,x,A"
    cases.append(
        (
            "esc50.csv, a 100 MB field",
            "esc50_csv",
            make_esc50_csv(os.path.join(folder, "field", "esc50.csv"), huge_field),
        )
    )
    cases.append(
        ("onnx.json, sample_rate 1e9", "onnx_meta", make_onnx_meta(os.path.join(folder, "onnx"), sample_rate=1e9))
    )
    os.symlink("/dev/zero", os.path.join(folder, "zero.wav"))
    cases.append(("a clip that links to /dev/zero", "find_audio", os.path.join(folder, "zero.wav")))
    return cases


def run_helper(script, arguments):
    """The last JSON line a helper module of ``speechbrain_datar.testing`` prints."""
    command = [sys.executable, "-m", script, *arguments]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def size_kib(path):
    """The size of a file, or the space the files of a folder take on disk, in KiB."""
    if os.path.isdir(path):
        return round(sum(os.stat(os.path.join(path, n)).st_blocks * 512 for n in os.listdir(path)) / 1024, 1)
    return round(os.path.getsize(path) / 1024, 1)


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="")
    add_device_argument(parser, cpu_only="reading and checking damaged inputs runs on the CPU")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp()
    inputs = [
        ("44,101 Hz WAV, 1 s", "load_clip", make_wav(os.path.join(folder, "odd.wav"), 44101, 44101)),
        ("1 Hz WAV, 8 KB", "inspect_clip", make_wav(os.path.join(folder, "one.wav"), 1, 4000)),
        ("9,999,991 Hz WAV", "inspect_clip", make_wav(os.path.join(folder, "fast.wav"), 9_999_991, 4000)),
        ("mp4 cut at 60% (header 14 s)", "inspect_clip", make_truncated_download(os.path.join(folder, "cut.mp4"))),
        ("the same, read past its end", "read_past_the_end", os.path.join(folder, "cut.mp4")),
        ("8176 x 8176 black mp4", "inspect_clip", make_huge_frame_video(os.path.join(folder, "huge.mp4"), 8176)),
        ("the same, 8 frames read", "read_frames", os.path.join(folder, "huge.mp4")),
        ("stride-0 checkpoint", "init_from", make_stride_zero_checkpoint(os.path.join(folder, "stride0.pth"))),
        (
            "zip bomb checkpoint (3.4 GB unpacked)",
            "init_from",
            make_zip_bomb_checkpoint(os.path.join(folder, "bomb.pth"), megabytes=3400),
        ),
    ]
    results, rows = [], []
    runs = [
        (name, kind, path, "speechbrain_datar.testing.hostile_media", [f"{kind}={path}"]) for name, kind, path in inputs
    ]
    runs += [
        (name, kind, path, "speechbrain_datar.testing.hostile_media", [f"{kind}={path}"])
        for name, kind, path in media_cases(folder)
    ]
    runs += [
        (name, kind, shards, "speechbrain_datar.testing.hostile_shards", [kind, shards, manifest])
        for name, kind, shards, manifest in shard_cases(folder)
    ]
    for name, kind, path, script, arguments in runs:
        result = dict(run_helper(script, arguments), input=name, file_kib=size_kib(path))
        results.append(result)
        rows.append([name, result["file_kib"], kind, result["peak_mib"], result["outcome"].split(": /")[0][:90]])
        print(rows[-1], flush=True)
    print(table(["input", "file KiB", "operation", "peak MiB", "outcome"], rows))
    write_json(args.json, {"inputs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
