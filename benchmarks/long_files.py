#!/usr/bin/env python3
"""Memory and speed of the exported model on long recordings.

Exports a DATAR of each preset (random weights; 10 s windows, 5 s hop, as the
recipes export them) and classifies waveforms of each length with
``EncoderClassifier.classify_batch``. Every point runs in a fresh process and
reports the peak resident memory above the loaded model and the waveform, and
the real-time factor (audio seconds per second of computation).

``--whole`` also measures the previous way for comparison: the features of the
whole file at once and every window through the encoder in one call.

    python benchmarks/long_files.py --presets micro,tiny --minutes 10,60 --json docs/long_files_cpu.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark import _rss_kib, machine, table, write_json  # noqa: E402

SAMPLE_RATE = 16000
FEATURES = {"sample_rate": SAMPLE_RATE, "n_mels": 128, "n_fft": 512, "win_length": 25, "hop_length": 10}


def export(preset, folder):
    """A randomly initialised DATAR of ``preset``, exported as the recipes do."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_datar.dataio.normalization import DatasetNormalization
    from speechbrain_datar.lobes.models.datar import DATAR
    from speechbrain_datar.nnet.classifier import Classifier
    from speechbrain_datar.pretrained.export import export_classifier

    torch.manual_seed(0)
    labels = CategoricalEncoder()
    labels.update_from_iterable([f"class{i}" for i in range(309)])
    encoder = DATAR(preset, reference_frames=1001).eval()
    return export_classifier(folder, encoder=encoder, head=Classifier(encoder.embedding_dim, 309).eval(),
                             normalizer=DatasetNormalization(mean=-5.0, std=4.0), label_encoders={"label": labels},
                             feature_options=FEATURES, window_frames=1001, hop_frames=501)


def measure(folder, minutes, whole):
    """Peak memory above model and waveform (MiB) and real-time factor, in this (fresh) process."""
    import gc

    from speechbrain.inference.classifiers import EncoderClassifier

    classifier = EncoderClassifier.from_hparams(source=folder, savedir=os.path.join(folder, ".loaded"))
    wav = 0.1 * torch.randn(1, int(minutes * 60 * SAMPLE_RATE))
    windows = classifier.mods.embedding_model
    gc.collect()
    base = _rss_kib("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current size
        f.write("5")
    start = time.perf_counter()
    with torch.no_grad():
        if whole:  # the previous way: all features, then all windows at once
            from speechbrain_datar.inference.sliding_window import sliding_window_embeddings

            feats = windows.normalizer(windows.features(wav), torch.ones(1))
            embeddings, valid = sliding_window_embeddings(windows.encoder, feats, None, windows.window_frames,
                                                          windows.hop_frames)
            classifier.mods.classifier.classifier(embeddings)
        else:
            classifier.classify_batch(wav)
    seconds = time.perf_counter() - start
    return {"peak_mib": (_rss_kib("VmHWM:") - base) / 1024, "seconds": seconds, "realtime": minutes * 60 / seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="micro,tiny", type=lambda s: s.split(","))
    parser.add_argument("--minutes", default="10,60", type=lambda s: [float(m) for m in s.split(",")])
    parser.add_argument("--whole", action="store_true", help="also measure whole-file features and all windows at once")
    parser.add_argument("--whole-minutes", default="10,30", type=lambda s: [float(m) for m in s.split(",")])
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--measure", nargs=3, metavar=("FOLDER", "MINUTES", "WHOLE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        folder, minutes, whole = args.measure
        print(json.dumps(measure(folder, float(minutes), whole == "1")))
        return None
    results = {"machine": machine(torch.device("cpu")), "points": []}
    print("machine:", json.dumps(results["machine"]))
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            folder = export(preset, os.path.join(tmp, preset))
            runs = [(m, False) for m in args.minutes] + ([(m, True) for m in args.whole_minutes] if args.whole else [])
            for minutes, whole in runs:
                command = [sys.executable, os.path.abspath(__file__), "--measure", folder, str(minutes), str(int(whole))]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                point = dict(json.loads(out), preset=preset, minutes=minutes, way="whole file" if whole else "chunked")
                results["points"].append(point)
                print(f"{preset} {minutes:g} min ({point['way']}): {point['peak_mib']:.0f} MiB, "
                      f"{point['realtime']:.1f}x real time", flush=True)
    rows = [[p["preset"], p["way"], f"{p['minutes']:g} min", f"{p['peak_mib']:.0f}", f"{p['realtime']:.1f}x"]
            for p in results["points"]]
    print()
    print(table(["preset", "embedding", "file", "peak MiB above model + waveform", "real time"], rows))
    for preset in args.presets:
        chunked = [p for p in results["points"] if p["preset"] == preset and p["way"] == "chunked"]
        if len(chunked) > 1:
            first, last = chunked[0], chunked[-1]
            print(f"{preset}: peak at {last['minutes']:g} min / at {first['minutes']:g} min = "
                  f"{last['peak_mib'] / first['peak_mib']:.2f}")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
