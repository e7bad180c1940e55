#!/usr/bin/env python3
"""Training FLOPs and wall time that coarse-to-fine training saves against single-phase training.

For each model and compression method, measures one training step (forward, backward, AdamW) on a
10 s clip at every phase's factor: FLOPs with ``torch.utils.flop_counter`` and wall time. A schedule
(e.g. ``4:5,1:15``: 5 epochs at factor 4, then 15 at full resolution) is compared with the same number
of epochs at full resolution, assuming equal epochs of equal data:

    saving = 1 - sum(epochs_i * cost(factor_i)) / (total_epochs * cost(1))

With ``--recipe``, it also runs the real VGGSound recipe on a generated set with the phases
``4:1,1:1`` and reports the measured time of a phase-1 epoch against a full-resolution epoch.

    python benchmarks/coarse_to_fine.py
    python benchmarks/coarse_to_fine.py --models datar-tiny,ast --schedules 4:5,1:15 4:3,2:3,1:14 --recipe
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from speechbrain_datar.benchmarking import (
    add_device_argument,
    build,
    flop_counter,
    machine,
    synchronize,
    table,
    write_json,
)
from speechbrain_datar.lobes.features import Fbank  # noqa: E402
from speechbrain_datar.training.coarse_to_fine import CoarseToFineSchedule  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = {"sample_rate": 16000, "n_mels": 128, "n_fft": 512, "win_length": 25, "hop_length": 10}


def parse_schedule(text):
    """``"4:5,1:15"`` -> phases ``[{factor: 4, epochs: 5}, {factor: 1, epochs: 15}]``."""
    phases = [dict(factor=int(f), epochs=int(e)) for f, e in (part.split(":") for part in text.split(","))]
    return phases


def step_cost(name, compression, factor, batch, repeats, device):
    """FLOPs and seconds of one training step on ``batch`` 10 s clips at ``factor``, on ``device``."""
    torch.manual_seed(0)
    model = build(name).to(device)
    fbank = Fbank(**OPTIONS).to(device)
    schedule = CoarseToFineSchedule(
        [{"factor": factor, "epochs": 1}, {"factor": 1, "epochs": 1}], compression, features=fbank, encoder=model
    )
    schedule.enter(0)
    head = torch.nn.Linear(model.embedding_dim, 309).to(device)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-5)
    wavs = torch.randn(batch, 160000, device=device)
    targets = torch.randint(0, 309, (batch,), device=device)

    def step():
        """One training step on the fixed batch."""
        feats = (fbank(wavs) + 4.0) / 9.0
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(head(model(feats)[:, 0]), targets)
        loss.backward()
        optimizer.step()

    with flop_counter() as counter:
        step()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return counter.get_total_flops(), statistics.median(times)


def recipe_epoch_ratio(preset, clips_per_class, device):
    """Runs the VGGSound recipe (phases 4:1,1:1, fshift) on generated 10 s clips; returns epoch seconds."""
    from speechbrain_datar.dataio.synthetic import make_vggsound_like

    with tempfile.TemporaryDirectory() as tmp:
        make_vggsound_like(os.path.join(tmp, "data"), clips_per_class, 1, seconds=10.0, include_bad_clips=False)
        out = os.path.join(tmp, "exp")
        cmd = [
            sys.executable,
            os.path.join(ROOT, "recipes", "VGGSound", "train.py"),
            os.path.join(ROOT, "hparams", "datar.yaml"),
            f"--data_folder={os.path.join(tmp, 'data')}",
            f"--output_folder={out}",
            f"--preset={preset}",
            "--batch_size=4",
            "--num_workers=0",
            "--valid_ratio=0.1",
            "--stats_max_clips=10",
            "--compression=fshift",
            "--phases=[{factor: 4, epochs: 1}, {factor: 1, epochs: 1}]",
            "--feature_augment=null",
            f"--device={device}",
        ]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        log = open(os.path.join(out, "train_log.txt")).read()
    seconds = [float(s) for s in re.findall(r"train_seconds: ([0-9.e+-]+)", log)]
    return seconds


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="datar-tiny,ast", type=lambda s: s.split(","))
    parser.add_argument("--compressions", default="fshift,avgpool,maxpool,patch", type=lambda s: s.split(","))
    parser.add_argument("--schedules", nargs="+", default=["4:5,1:15", "2:5,1:15", "4:3,2:3,1:14"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipe", action="store_true", help="also time real recipe epochs (DATAR-tiny, 10 s clips)")
    parser.add_argument("--json", help="write the measurements here")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    schedules = {text: parse_schedule(text) for text in args.schedules}
    factors = sorted({p["factor"] for phases in schedules.values() for p in phases})
    print("machine:", json.dumps(machine(args.device)))
    results = {"costs": {}, "savings": {}}
    rows = []
    for name in args.models:
        for compression in args.compressions:
            costs = {f: step_cost(name, compression, f, args.batch, args.repeats, args.device) for f in factors}
            results["costs"][f"{name}/{compression}"] = {
                str(f): {"flops": c[0], "seconds": c[1]} for f, c in costs.items()
            }
            for text, phases in schedules.items():
                total = sum(p["epochs"] for p in phases)
                flops = sum(p["epochs"] * costs[p["factor"]][0] for p in phases) / (total * costs[1][0])
                seconds = sum(p["epochs"] * costs[p["factor"]][1] for p in phases) / (total * costs[1][1])
                results["savings"][f"{name}/{compression}/{text}"] = {
                    "flops_saved": 1 - flops,
                    "time_saved": 1 - seconds,
                }
                rows.append([name, compression, text, f"{100 * (1 - flops):.1f}%", f"{100 * (1 - seconds):.1f}%"])
            print(f"measured {name} / {compression}", flush=True)
    print()
    print(f"training on 10 s clips, batch {args.batch}: saving of a schedule against the same epochs at factor 1")
    print(table(["model", "compression", "schedule (factor:epochs)", "training FLOPs saved", "wall time saved"], rows))
    cost_rows = []
    for key, per_factor in results["costs"].items():
        full = per_factor["1"]
        for f, c in per_factor.items():
            if f != "1":
                cost_rows.append(
                    [key, f"x{f}", f"{c['flops'] / full['flops']:.3f}", f"{c['seconds'] / full['seconds']:.3f}"]
                )
    print()
    print("one training step at a compression factor, relative to full resolution:")
    print(table(["model / compression", "factor", "FLOPs ratio", "time ratio"], cost_rows))
    if args.recipe:
        seconds = recipe_epoch_ratio("tiny", clips_per_class=6, device=args.device)
        results["recipe_epoch_seconds"] = seconds
        print(
            f"\nrecipe (DATAR-tiny, fshift, 10 s clips): phase-1 epoch {seconds[0]:.1f} s, "
            f"full-resolution epoch {seconds[1]:.1f} s, ratio {seconds[0] / seconds[1]:.2f}"
        )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
