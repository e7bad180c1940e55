#!/usr/bin/env python3
"""The whole VGGSound job on a small audio set this project generates itself.

Generates six classes of synthetic sound events in VGGSound's layout
(``vggsound.csv`` + ``audio/<id>_<start:06d>.wav``, with a missing, an empty, a
corrupt and a silent clip among them), then runs the real recipe
(prepare -> train -> test -> export) with ``hparams/datar.yaml`` and a small
DATAR, and finally loads the exported folder with SpeechBrain's
``EncoderClassifier`` and classifies a test file.

    python recipes/VGGSound/run_embedded_default.py [--output_folder results/embedded_default] [--video]

With ``--video`` the clips are mp4 videos with sound (and a missing, an empty, a
corrupt, a silent one, one without sound, one without picture and one whose
picture stops early among them), read as they are.

Extra ``--key=value`` arguments are passed to ``train.py`` as hparams overrides.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# A small DATAR and short clips, so that the job runs on 2 CPU cores in minutes.
OVERRIDES = {
    "preset": "micro",
    "clip_seconds": 2.0,
    "eval_hop_seconds": 1.0,
    "number_of_epochs": 15,
    "batch_size": 8,
    "lr": 0.0005,
    "drop_path_rate": 0.0,
    "num_workers": 0,
    "valid_ratio": 0.1,
}


def main(argv=None):
    """Command line: the main job on the embedded default (generated data; no download)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_folder", default=os.path.join("results", "embedded_default"))
    parser.add_argument("--hparams", default=os.path.join(ROOT, "hparams", "datar.yaml"))
    parser.add_argument("--train_per_class", type=int, default=60)
    parser.add_argument("--test_per_class", type=int, default=12)
    parser.add_argument("--video", action="store_true", help="the clips as mp4 videos with sound, as downloaded")
    args, extra = parser.parse_known_args(argv)

    from speechbrain_datar.dataio.synthetic import CLASSES, make_vggsound_like

    data_folder = os.path.join(args.output_folder, "data")
    if not os.path.isfile(os.path.join(data_folder, "vggsound.csv")):
        made = make_vggsound_like(data_folder, args.train_per_class, args.test_per_class, seconds=2.0, video=args.video)
        print(f"generated {made['rows']} clips of {len(CLASSES)} classes in {data_folder}", flush=True)
    run_folder = os.path.join(args.output_folder, "run")
    overrides = dict(OVERRIDES, data_folder=data_folder, output_folder=run_folder)
    given = {arg.split("=", 1)[0][2:] for arg in extra if arg.startswith("--")}  # e.g. --number_of_epochs=2
    overrides = {key: value for key, value in overrides.items() if key not in given}
    command = [sys.executable, os.path.join(HERE, "train.py"), args.hparams]
    command += [f"--{key}={value}" for key, value in overrides.items()] + extra
    print("running:", " ".join(command), flush=True)
    start = time.time()
    subprocess.run(command, check=True)
    elapsed = time.time() - start

    from speechbrain.inference.classifiers import EncoderClassifier

    from speechbrain_datar.inference.interfaces import AudioClassifier

    export = os.path.join(run_folder, "pretrained")
    interface = AudioClassifier if args.video else EncoderClassifier  # AudioClassifier also reads video files
    classifier = interface.from_hparams(
        source=os.path.abspath(export), savedir=os.path.join(args.output_folder, "loaded_model")
    )
    with open(os.path.join(run_folder, "save", "test.json")) as f:
        test = json.load(f)
    clip_id = sorted(test)[0]
    out_prob, score, index, label = classifier.classify_file(test[clip_id]["path"])
    with open(os.path.join(run_folder, "test_metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(run_folder, "save", "prepare_report.json")) as f:
        report = json.load(f)
    skipped = {split: r["reasons"] for split, r in report.items() if r["skipped"]}
    print()
    print(f"skipped during preparation: {skipped}")
    print(f"training + test + export took {elapsed:.0f} s")
    print(
        f"test accuracy: top-1 {metrics['top1']:.1f}%, top-5 {metrics['top5']:.1f}% (chance: {100 / len(CLASSES):.1f}%)"
    )
    print(
        f"{interface.__name__} on {os.path.basename(test[clip_id]['path'])}: '{label[0]}' "
        f"(true: '{test[clip_id]['label']}')"
    )
    print(f"exported model: {export} ({', '.join(sorted(os.listdir(export)))})")


if __name__ == "__main__":
    main()
