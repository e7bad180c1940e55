#!/usr/bin/env python3
"""What each inference precision costs in accuracy, on models trained on real recordings.

For every exported model given (one per cross-validation fold, e.g. the ESC-10 runs of ``benchmarks/esc10.py``),
classifies its fold's test clips (``save/test.json`` beside the export) with ``StreamingClassifier`` in fp32,
bf16 and int8, and reports per model and precision: test top-1, its change against fp32, the clips whose label
changed, the largest change of any class probability, and the median CPU seconds ``classify_file`` took per clip
(decoding, features, windows and head: the trade a user chooses from; measure it with nothing else running).
bf16 runs even on a CPU without bf16 instructions (emulated: the same rounding, much slower; the JSON says
which, and its seconds then say nothing of native bf16).

    python benchmarks/precision_accuracy.py \\
        --model "DATAR-micro=<runs>/datar_micro/none/lr0.001/fold{fold}" \\
        --model "AST (DATAR-micro's size)=<runs>/ast__datar_micro_s_size/none/lr0.0003/fold{fold}" \\
        --folds 1,2,3,4,5 --json docs/precision_accuracy_cpu.json

Every point keeps each clip's label and class probabilities, so that two versions of the code can be compared
label for label: ``--reference OLD.json`` reports, per model, fold and precision, the clips whose label differs
from the reference's and the largest change of a probability (run the reference with ``PYTHONPATH`` set to the
other version's checkout).

    PYTHONPATH=<old checkout> python benchmarks/precision_accuracy.py --model ... --precisions fp32 --json old.json
    python benchmarks/precision_accuracy.py --model ... --precisions fp32 --reference old.json --json new.json
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
from tqdm import tqdm

from speechbrain_datar.benchmarking import add_device_argument, machine, table, write_json

PRECISIONS = ("fp32", "bf16", "int8")


def classify_fold(run_folder, precisions, device):
    """``{precision: (labels, probabilities [n, C], seconds per clip)}`` of the fold's test clips on ``device``,
    and their true labels."""
    from speechbrain_datar.inference import precision as precision_module
    from speechbrain_datar.inference.interfaces import StreamingClassifier

    with open(os.path.join(run_folder, "save", "test.json")) as f:
        test = json.load(f)
    truth = [entry["label"] for entry in test.values()]
    results = {}
    native = precision_module.bf16_supported(device)
    precision_module.bf16_supported = lambda device: True  # measure bf16's accuracy even where it is emulated
    with tempfile.TemporaryDirectory() as savedir:
        for precision in precisions:
            model = StreamingClassifier.from_hparams(
                source=os.path.join(run_folder, "pretrained"),
                savedir=os.path.join(savedir, precision),
                run_opts={"device": str(device)},
            )
            model.set_precision(precision)
            labels, probs, seconds = [], [], []
            model.classify_file(next(iter(test.values()))["path"])  # the first call builds what later calls reuse
            for entry in tqdm(test.values(), desc=f"{os.path.basename(run_folder)} {precision}", leave=False):
                start = time.perf_counter()
                out_prob, _, _, label = model.classify_file(entry["path"])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
                labels.append(label[0])
                probs.append(out_prob.exp()[0].cpu())
            assert model.precision_running == precision
            results[precision] = (labels, torch.stack(probs), seconds)
    return results, truth, native


def against(reference, point):
    """Clips whose label differs between two points of the same model, fold and precision, and the largest
    change of a class probability."""
    return {
        "labels_changed": sum(a != b for a, b in zip(reference["labels"], point["labels"])),
        "max_prob_change": (torch.tensor(reference["probabilities"]) - torch.tensor(point["probabilities"]))
        .abs()
        .max()
        .item(),
    }


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", required=True, help="NAME=RUN_FOLDER with {fold} where the fold number goes"
    )
    parser.add_argument("--folds", default="1", type=lambda s: [int(f) for f in s.split(",")])
    parser.add_argument(
        "--precisions",
        default=",".join(PRECISIONS),
        type=lambda s: s.split(","),
        help="fp32 first (the others are compared with it)",
    )
    parser.add_argument("--reference", help="a JSON of this script (another version's) to compare labels with")
    parser.add_argument("--json", help="write the measurements here")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if not args.precisions or args.precisions[0] != "fp32" or not set(args.precisions) <= set(PRECISIONS):
        parser.error(f"--precisions: fp32 first, then any of {PRECISIONS}")
    reference = {}
    if args.reference:
        with open(args.reference) as f:
            reference = {(p["model"], p["fold"], p["precision"]): p for p in json.load(f)["points"]}
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    points, rows = [], []
    for spec in args.model:
        name, _, pattern = spec.partition("=")
        per_precision = {
            p: {"correct": 0, "changed": 0, "max_prob_change": 0.0, "seconds": []} for p in args.precisions
        }
        clips = 0
        for fold in args.folds:
            results, truth, native = classify_fold(pattern.format(fold=fold), args.precisions, args.device)
            clips += len(truth)
            reference_labels, reference_probs, _ = results["fp32"]
            for precision, (labels, probs, seconds) in results.items():
                tally = per_precision[precision]
                tally["seconds"] += seconds
                tally["correct"] += sum(a == b for a, b in zip(labels, truth))
                tally["changed"] += sum(a != b for a, b in zip(labels, reference_labels))
                change = (probs - reference_probs).abs().max().item()
                tally["max_prob_change"] = max(tally["max_prob_change"], change)
                point = {
                    "model": name,
                    "fold": fold,
                    "precision": precision,
                    "clips": len(truth),
                    "top1": 100.0 * sum(a == b for a, b in zip(labels, truth)) / len(truth),
                    "labels_changed": sum(a != b for a, b in zip(labels, reference_labels)),
                    "max_prob_change": change,
                    "seconds_per_clip": statistics.median(seconds),
                    "bf16_native": native,
                    "labels": labels,
                    "probabilities": [[round(v, 7) for v in row] for row in probs.tolist()],
                }
                if (name, fold, precision) in reference:
                    point["against_reference"] = against(reference[(name, fold, precision)], point)
                    print(f"{name} fold {fold} {precision} against the reference: {point['against_reference']}")
                points.append(point)
        fp32_top1 = 100.0 * per_precision["fp32"]["correct"] / clips
        for precision, tally in per_precision.items():
            top1 = 100.0 * tally["correct"] / clips
            rows.append(
                [
                    name,
                    precision,
                    f"{top1:.2f}",
                    f"{top1 - fp32_top1:+.2f}",
                    f"{tally['changed']}/{clips}",
                    f"{tally['max_prob_change']:.4f}",
                    f"{statistics.median(tally['seconds']):.3f}",
                ]
            )
    headers = ["model", "precision", "test top-1 %", "vs fp32", "labels changed", "max prob change", "CPU s / clip"]
    print(table(headers, rows))
    if args.json:
        write_json(args.json, {"machine": machine(args.device), "folds": args.folds, "points": points, "table": rows})


if __name__ == "__main__":
    main()
