#!/usr/bin/env python3
"""Peak memory and outcome of each hostile input of the reports, at their real sizes, each in a fresh process.

An odd-rate WAV (44,101 Hz), a 1 Hz and a 9,999,991 Hz WAV, a download cut after 60% of its bytes (read in
preparation and read past its end as training would), an all-black 8176 x 8176 H.264 file (preparation with
frames, and 8 frames read), a 2 KB checkpoint declaring a 1.4 G-element tensor through a stride-0 view, and
a 3.4 MB zip that would unpack to 3.4 GB. The figure is the whole process's peak resident memory (torch and
SpeechBrain imported: about 0.55 GB before any input is read).

    python benchmarks/hostile_inputs.py --json docs/hostile_inputs_cpu.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark import table, write_json  # noqa: E402
from hostile_media import (  # noqa: E402
    make_huge_frame_video,
    make_stride_zero_checkpoint,
    make_truncated_download,
    make_wav,
    make_zip_bomb_checkpoint,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="")
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
    for name, kind, path in inputs:
        line = (
            subprocess.run(
                [sys.executable, os.path.join(ROOT, "tests", "hostile_media.py"), f"{kind}={path}"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = dict(json.loads(line), input=name, file_kib=round(os.path.getsize(path) / 1024, 1))
        results.append(result)
        rows.append([name, result["file_kib"], kind, result["peak_mib"], result["outcome"].split(": /")[0][:70]])
        print(rows[-1], flush=True)
    print(table(["input", "file KiB", "operation", "peak MiB", "outcome"], rows))
    write_json(args.json, {"inputs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
