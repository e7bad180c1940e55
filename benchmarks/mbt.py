#!/usr/bin/env python3
"""MBT-base's fusion variants side by side: MACs and inference time of one clip, beside DATAR and AST.

Audio-visual input as in the MBT paper: ``--seconds`` of audio (128 mel bins, 16x16 patches) and 8
frames of 224 x 224. Variants: late fusion (L_f = 12), bottlenecks (B = 4) at L_f = 8 and 0, and the
paper's "vanilla" cross-attention at L_f = 8 and 0. DATAR-tiny and AST are measured on the audio alone.

    python benchmarks/mbt.py --seconds 8 --json docs/mbt_cpu.json
"""

import argparse

import torch

from speechbrain_datar.benchmarking import add_device_argument, build, count_macs, machine, table, timed, write_json
from speechbrain_datar.lobes.models.mbt import MBT  # noqa: E402

VARIANTS = {
    "MBT late fusion (L_f = 12)": dict(fusion_layer=12),
    "MBT bottlenecks, L_f = 8": dict(fusion_layer=8),
    "MBT bottlenecks, L_f = 0": dict(fusion_layer=0),
    "MBT cross-attention, L_f = 8": dict(fusion_layer=8, fusion="cross_attention"),
    "MBT cross-attention, L_f = 0": dict(fusion_layer=0, fusion="cross_attention"),
}


class _WithFrames(torch.nn.Module):
    """An MBT behind ``model(feats)``, with the clip's frames fixed (for the shared measuring helpers)."""

    def __init__(self, model, frames):
        super().__init__()
        self.model, self.frames = model, frames

    def forward(self, feats):
        """The audio-visual model on the features and its fixed frames."""
        return self.model(feats, frames=self.frames)


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the measurements here")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    device = args.device
    frames_per_clip = int(round(args.seconds * 100)) + 1
    feats = torch.randn(1, frames_per_clip, 128, device=device)
    frames = torch.randn(1, 8, 3, 224, 224, device=device)
    results = {"machine": machine(device), "seconds": args.seconds, "models": {}}
    print("machine:", results["machine"])
    models = {
        name: _WithFrames(MBT("base", audio_frames=frames_per_clip, **kwargs).eval(), frames).to(device)
        for name, kwargs in VARIANTS.items()
    }
    models.update(
        {
            "DATAR-tiny (audio only)": build("datar-tiny").eval().to(device),
            "AST (audio only)": build("ast").eval().to(device),
        }
    )
    for name, model in models.items():
        with torch.no_grad():
            seconds = timed(lambda model=model: model(feats), device, args.repeats, warmup=1)
        results["models"][name] = {"gmacs": count_macs(model, feats) / 1e9, "infer_s": seconds}
        print(f"measured {name}", flush=True)
    late = results["models"]["MBT late fusion (L_f = 12)"]
    rows = [
        [
            name,
            f"{e['gmacs']:.1f}",
            f"{e['gmacs'] / late['gmacs']:.3f}",
            f"{e['infer_s']:.2f}",
            f"{e['infer_s'] / late['infer_s']:.2f}",
        ]
        for name, e in results["models"].items()
    ]
    print()
    print(f"{args.seconds:g} s of audio (128 x {frames_per_clip}) + 8 frames of 224 x 224, batch 1, {device}:")
    print(table(["model", "GMACs", "MACs / late fusion", "inference s", "time / late fusion"], rows))
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
