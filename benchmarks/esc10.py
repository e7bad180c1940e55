#!/usr/bin/env python3
"""DATAR, its ablations, AST and SpeechBrain's CNN14 trained from scratch on real recordings: ESC-10.

ESC-10 (400 five-second clips, 10 classes, 5 folds) in the official ESC-50 layout (make it from a class-folder
copy with ``recipes/ESC50/class_folders_to_esc50.py``). Every run is the ESC-50 recipe
(``recipes/ESC50/train.py``) with the same budget: the epochs, batch, optimiser and schedule of
``hparams/ESC50/datar.yaml``, and one augmentation setting for every model. The protocol, in stages
(each resumable: a finished run is read back, not trained again):

1. ``lr``: DATAR-micro's learning rate, searched over ``--lrs`` on fold 1's split (folds 2-5 train; the
   best validation top-1 over the epochs, on the validation part carved from the training folds, picks it;
   fold 1's test clips play no part).
2. ``augment``: at that rate, the augmentation settings of ``AUGMENTATIONS`` for DATAR, chosen the same way.
3. ``lr_others``: the learning-rate search, with the chosen augmentation, for DATAR without deformable
   attention, without the input adaptor, AST of DATAR-micro's size, and DATAR-micro again (its stage-1
   search ran with the default augmentation; this one sets its rate from here on).
4. ``folds``: every model at its own rate on folds 2-5 (fold 1's runs are those of the search).
5. ``coarse_to_fine``: DATAR-micro with phases ``{factor: 4, epochs: 8}, {factor: 1, epochs: 22}`` on
   ``--coarse-to-fine-folds``, against the full-resolution runs of the same folds.
6. ``larger``: DATAR-tiny on fold 1 at DATAR-micro's rate.
7. ``cnn14``: SpeechBrain's CNN14 on as many folds as ``--cnn14-folds`` (about 2.5 minutes an epoch with one
   thread on an AVX-512 CPU); each fold's export is that fold's teacher.
8. ``distill_search``: DATAR-micro distilled from fold 1's CNN14, ``DISTILL_WEIGHTS`` x ``DISTILL_TEMPERATURES``,
   chosen on fold 1's validation part.
9. ``distill_folds``: DATAR-micro, DATAR-mini (AST-micro's MACs) and AST-micro distilled with that setting from
   each fold's CNN14 on fold 1 and ``--folds``, DATAR-mini without a teacher, DATAR-tiny with and without on
   fold 1; the summary pairs each student with its teacher and DATAR with AST fold by fold.
10. ``step_time``: one training step of 16 clips of each model, measured in turn in one process (the runs'
   seconds per epoch depend on what shared the cores with them).

    python benchmarks/esc10.py --data_folder /data/esc10 --results /data/esc10_runs --json docs/esc10_cpu.json \\
        --plot docs/esc10_valid_curves.png

The JSON holds every run (per-epoch validation accuracy, training seconds, test accuracy), the searches
and what they chose, mean and standard deviation over folds, and each model's parameters and MACs on
a 5 s clip.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from speechbrain_datar.benchmarking import add_device_argument, count_macs, machine, synchronize, table, write_json
from speechbrain_datar.training.cross_validation import fold_options, run_fold, summary
from speechbrain_datar.training.hparams import load_hparams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ESC50_TRAIN = os.path.join(ROOT, "recipes", "ESC50", "train.py")
#: model -> (hparams file, options)
MODELS = {
    "DATAR-micro": ("hparams/ESC50/datar.yaml", []),
    "DATAR-micro, no deformable attention": ("hparams/ESC50/datar.yaml", ["--deformable=False"]),
    "DATAR-micro, no input adaptor": ("hparams/ESC50/datar.yaml", ["--input_adaptor=none"]),
    "AST (DATAR-micro's size)": ("hparams/ESC50/ast.yaml", []),
    "DATAR-mini (AST's MACs)": ("hparams/ESC50/datar.yaml", ["--preset=mini"]),
    "DATAR-tiny": ("hparams/ESC50/datar.yaml", ["--preset=tiny"]),
    "CNN14 (SpeechBrain)": ("hparams/ESC50/cnn14.yaml", []),
}
#: augmentation setting -> options (explicit: the runs of docs/esc10_cpu.json were made when the ESC-50 file's
#: own setting was SpecAugment + gain, shift, noise; it is none now, the setting this study chose)
SPEC_AUGMENT = "--feature_augment=!ref <spec_augment>"
GAIN_SHIFT_NOISE = "--wave_augment=!ref <gain_shift_noise>"
AUGMENTATIONS = {
    "none": ["--wave_augment=null", "--feature_augment=null", "--mixup_alpha=0.0"],
    "SpecAugment": [SPEC_AUGMENT, "--wave_augment=null", "--mixup_alpha=0.0"],
    "SpecAugment + mixup": [SPEC_AUGMENT, "--wave_augment=null", "--mixup_alpha=0.5"],
    "SpecAugment + gain, shift, noise": [SPEC_AUGMENT, GAIN_SHIFT_NOISE, "--mixup_alpha=0.0"],
    "SpecAugment + gain, shift, noise + mixup": [SPEC_AUGMENT, GAIN_SHIFT_NOISE, "--mixup_alpha=0.5"],
    "SpecAugment + gain, shift, noise + 4 s crops": [
        SPEC_AUGMENT,
        GAIN_SHIFT_NOISE,
        "--mixup_alpha=0.0",
        "--clip_seconds=4.0",
    ],
}
DEFAULT_AUGMENTATION = "SpecAugment + gain, shift, noise"
COARSE_TO_FINE = "[{factor: 4, epochs: 8}, {factor: 1, epochs: 22}]"
#: the distillation search on fold 1's split: distill_weight x distill_temperature
DISTILL_WEIGHTS = (0.3, 0.6, 0.9)
DISTILL_TEMPERATURES = (2.0, 4.0)
#: students distilled on every fold from that fold's CNN14 (with the search's setting), and without a teacher
STUDENTS = ("DATAR-micro", "DATAR-mini (AST's MACs)", "AST (DATAR-micro's size)")
STAGES = (
    "lr",
    "augment",
    "lr_others",
    "folds",
    "coarse_to_fine",
    "larger",
    "cnn14",
    "distill_search",
    "distill_folds",
    "step_time",
)


def slug(text):
    """A folder name for ``text``: letters and digits, the rest as underscores."""
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


class Benchmark:
    """Runs (or reads back) the recipe runs of the protocol and keeps the JSON up to date."""

    def __init__(self, args):
        self.args = args
        self.results = {
            "machine": machine(args.device),
            "runs": {},
            "protocol": {
                "data": "ESC-10 (400 real 5 s clips, 10 classes), official folds",
                "lrs": args.lrs,
                "selection": "best validation top-1 over the epochs, on the validation part (20% of each class) "
                "of fold 1's training folds; ties: lower validation loss",
            },
        }
        if args.json and os.path.isfile(args.json):
            with open(args.json) as f:
                self.results.update({k: v for k, v in json.load(f).items() if k != "machine"})
        self.lock = threading.Lock()
        self.env = None
        if args.parallel > 1:  # concurrent runs, one thread and one loader worker each
            self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.results["protocol"]["concurrent_runs"] = args.parallel

    def runs(self, jobs):
        """Several ``run`` s (``(model, lr, fold, augmentation, extra, tag)``), ``--parallel`` at a time."""
        with ThreadPoolExecutor(max_workers=self.args.parallel) as pool:
            return list(pool.map(lambda job: self.run(*job), jobs))

    def run(self, model, lr, fold, augmentation=None, extra=(), tag=None):
        """One recipe run; returns its record (read back if it finished before)."""
        hparams_file, options = MODELS[model]
        augmentation = augmentation or self.chosen("augmentation") or DEFAULT_AUGMENTATION
        tag = tag or f"{slug(model)}/{slug(augmentation)}/lr{lr:g}"
        folder = os.path.join(self.args.results, tag)
        options = [
            f"--data_folder={self.args.data_folder}",
            "--esc10=True",
            f"--lr={lr}",
            f"--output_folder={folder}",
            *options,
            *AUGMENTATIONS[augmentation],
            *extra,
        ]
        if self.args.parallel > 1:
            options.append("--num_workers=1")
        if self.args.device.type != "cpu":  # the recipe's own default is the CPU; runs on it keep their commands
            options.append(f"--device={self.args.device}")
        key = f"{tag}/fold{fold}"
        if key not in self.results["runs"]:
            print(f"[{time.strftime('%H:%M:%S')}] {key}", flush=True)
            started = time.time()
            run = run_fold(
                ESC50_TRAIN,
                os.path.join(ROOT, hparams_file),
                options,
                fold,
                log_file=os.path.join(folder, f"fold{fold}.log"),
                env=self.env,
            )
            epochs = run["epochs"]
            record = {
                "model": model,
                "lr": lr,
                "fold": fold,
                "augmentation": augmentation,
                "extra": list(extra),
                "test_top1": run["test"]["top1"],
                "best_valid_top1": max(e["valid_top1"] for e in epochs),
                "best_valid_loss": min(e["valid_loss"] for e in epochs),
                "valid_top1": [e["valid_top1"] for e in epochs],
                "train_seconds_per_epoch": statistics.median(e["train_seconds"] for e in epochs),
                "train_seconds_total": round(sum(e["train_seconds"] for e in epochs), 1),
                "wall_seconds": round(time.time() - started, 1),
                "command": shlex.join(["python", "recipes/ESC50/train.py", hparams_file] + fold_options(options, fold)),
            }
            with self.lock:
                self.results["runs"][key] = record
                self.save()
            print(f"    {key}: valid {record['best_valid_top1']:.1f}, test {run['test']['top1']:.1f}", flush=True)
        return self.results["runs"][key]

    def chosen(self, what, model=None):
        """What a search chose (``what``, for ``model`` when given), or ``None``."""
        return self.results.get("chosen", {}).get(what if model is None else f"{what}:{model}")

    def choose(self, what, runs, value, model=None):
        """Records the setting whose run had the best validation top-1 (then the lowest validation loss)."""
        best = max(runs, key=lambda run: (run["best_valid_top1"], -run["best_valid_loss"]))
        self.results.setdefault("chosen", {})[what if model is None else f"{what}:{model}"] = value(best)
        self.save()
        return value(best)

    def search_lr(self, model):
        """``model``'s learning rate searched on fold 1's validation part."""
        runs = self.runs([(model, lr, 1) for lr in self.args.lrs])
        self.results.setdefault("lr_search", {})[model] = {f"{r['lr']:g}": r["best_valid_top1"] for r in runs}
        return self.choose("lr", runs, lambda run: run["lr"], model)

    def save(self):
        """Writes the JSON, with the sizes of every model."""
        sizes = self.results.setdefault("models", {})
        sizes.update(model_sizes([m for m in MODELS if m not in sizes]))
        write_json(self.args.json, self.results)

    def stage(self, name):
        """Whether stage ``name`` runs."""
        return name in self.args.stages

    def main(self):
        """Runs the stages asked for, in order, then writes the report."""
        args = self.args
        datar = "DATAR-micro"
        if self.stage("lr"):
            self.search_lr(datar)
        if self.stage("augment"):
            lr = self.chosen("lr", datar)
            runs = self.runs([(datar, lr, 1, augmentation) for augmentation in AUGMENTATIONS])
            self.results["augmentation_study"] = {
                r["augmentation"]: {"best_valid_top1": r["best_valid_top1"], "fold1_test_top1": r["test_top1"]}
                for r in runs
            }
            self.choose("augmentation", runs, lambda run: run["augmentation"])
        compared = [m for m in MODELS if m not in ("DATAR-tiny", "CNN14 (SpeechBrain)", "DATAR-mini (AST's MACs)")]
        if self.stage("lr_others"):
            # Every model's rate with the chosen augmentation, DATAR-micro's searched again (stage 1 ran without it).
            first = self.results.get("lr_search", {}).get(datar)
            if first and "lr_search_with_default_augmentation" not in self.results:
                self.results["lr_search_with_default_augmentation"] = {datar: first}
            self.runs([(model, lr, 1) for model in compared for lr in args.lrs])
            for model in compared:
                self.search_lr(model)
        if self.stage("folds"):
            self.runs([(model, self.chosen("lr", model), fold) for fold in args.folds for model in compared])
        if self.stage("coarse_to_fine"):
            lr = self.chosen("lr", datar)
            self.runs(
                [
                    (datar, lr, fold, None, [f"--phases={COARSE_TO_FINE}"], self.coarse_to_fine_tag())
                    for fold in args.coarse_to_fine_folds
                ]
            )
            self.runs([(datar, lr, fold) for fold in args.coarse_to_fine_folds])
        if self.stage("larger"):
            self.run("DATAR-tiny", self.chosen("lr", datar), 1)
        # CNN14's folds and the distillation search (fold 1's teacher) share one queue: no slot waits for a stage
        epochs = [f"--number_of_epochs={args.cnn14_epochs}"]
        teachers = [("CNN14 (SpeechBrain)", args.cnn14_lr, fold, None, epochs) for fold in args.cnn14_folds]
        if self.stage("distill_search"):
            self.search_distillation(teachers if self.stage("cnn14") else [])
        elif self.stage("cnn14"):
            self.runs(teachers)
        if self.stage("distill_folds"):
            self.distil_folds()
        if self.stage("step_time"):
            self.results["training_step_seconds"] = dict(
                batch=16, clip_seconds=5, seconds=training_step_seconds(list(MODELS), device=self.args.device)
            )
            self.save()
        self.summarise_folds([m for m in compared if self.chosen("lr", m) is not None])
        self.summarise_coarse_to_fine()
        self.summarise_distillation()
        self.report(compared)

    # ------------------------------------------------------------------------------------ distillation
    def cnn14_tag(self):
        """The runs folder of CNN14's folds."""
        return f"{slug('CNN14 (SpeechBrain)')}/none/lr{self.args.cnn14_lr:g}"

    def teacher(self, fold):
        """Fold ``fold``'s CNN14 export: the teacher of that fold's students (it never saw their test clips)."""
        folder = os.path.join(self.args.results, self.cnn14_tag(), f"fold{fold}", "pretrained")
        if not os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
            raise SystemExit(f"error: no CNN14 export for fold {fold} ({folder}): run the cnn14 stage first")
        return folder

    def lr_of(self, model):
        """A model's searched rate; DATAR-mini and DATAR-tiny take DATAR-micro's (not searched for them)."""
        return self.chosen("lr", model) or self.chosen("lr", "DATAR-micro")

    def distilled(self, model, fold, weight, temperature):
        """A job of ``runs``: ``model`` on ``fold`` distilled from that fold's CNN14."""
        options = [
            f"--teacher={self.teacher(fold)}",
            f"--distill_weight={weight}",
            f"--distill_temperature={temperature}",
            # every student of a fold's teacher reads the scores the first of them computed
            f"--teacher_cache={os.path.join(self.args.results, 'teacher_scores_cache')}",
        ]
        lr = self.lr_of(model)
        return (model, lr, fold, None, options, f"{slug(model)}/distilled_w{weight:g}_t{temperature:g}/lr{lr:g}")

    def search_distillation(self, first=()):
        """``distill_weight`` x ``distill_temperature`` for DATAR-micro on fold 1's split (validation part), after
        the jobs ``first`` in the same queue."""
        grid = [(w, t) for w in DISTILL_WEIGHTS for t in DISTILL_TEMPERATURES]
        runs = self.runs([*first, *(self.distilled("DATAR-micro", 1, w, t) for w, t in grid)])[len(first) :]
        self.results["distill_search"] = {
            f"weight {w:g}, temperature {t:g}": run["best_valid_top1"] for (w, t), run in zip(grid, runs)
        }
        setting = dict(zip(grid, runs))
        best = max(grid, key=lambda wt: (setting[wt]["best_valid_top1"], -setting[wt]["best_valid_loss"]))
        self.results.setdefault("chosen", {})["distillation"] = {"weight": best[0], "temperature": best[1]}
        self.save()

    def distil_folds(self):
        """Every student with and without the chosen distillation on every fold, DATAR-tiny on fold 1."""
        chosen = self.chosen("distillation")
        if chosen is None:
            raise SystemExit("error: no distillation setting chosen yet: run the distill_search stage first")
        folds = [1, *self.args.folds]
        # in the order the results matter: DATAR-micro and AST-micro distilled (their undistilled runs exist),
        # then DATAR-mini without and with a teacher fold by fold, then DATAR-tiny
        jobs = [self.distilled(m, f, chosen["weight"], chosen["temperature"]) for m in STUDENTS[::2] for f in folds]
        for f in folds:
            jobs += [self.distilled("DATAR-mini (AST's MACs)", f, chosen["weight"], chosen["temperature"])]
            jobs += [("DATAR-mini (AST's MACs)", self.lr_of("DATAR-mini (AST's MACs)"), f)]
        # DATAR-tiny costs CNN14's time per epoch: --tiny-epochs (stated in each record's command) fits it
        epochs = [f"--number_of_epochs={self.args.tiny_epochs}"] if self.args.tiny_epochs else []
        model, lr, fold, augmentation, options, tag = self.distilled(
            "DATAR-tiny", 1, chosen["weight"], chosen["temperature"]
        )
        jobs += [(model, lr, fold, augmentation, options + epochs, tag)]
        jobs += [("DATAR-tiny", self.lr_of("DATAR-tiny"), 1, None, epochs)]
        self.runs(jobs)

    def summarise_distillation(self):
        """Test top-1 per fold of CNN14 and of each student with and without its teacher, mean ± std, and the
        paired per-fold differences (student minus its teacher, DATAR minus AST)."""
        runs, chosen = self.results["runs"], self.chosen("distillation")
        plain = self.chosen("augmentation") or DEFAULT_AUGMENTATION

        def per_fold(tag):
            """``{fold: test top-1}`` of the runs tagged ``tag``."""
            return {f: runs[f"{tag}/fold{f}"]["test_top1"] for f in range(1, 6) if f"{tag}/fold{f}" in runs}

        rows = {"CNN14 (SpeechBrain)": per_fold(self.cnn14_tag())}
        for model in (*STUDENTS, "DATAR-tiny"):
            lr = self.lr_of(model)
            if lr is None:
                continue
            rows[model] = per_fold(f"{slug(model)}/{slug(plain)}/lr{lr:g}")
            if chosen:
                distilled = f"{slug(model)}/distilled_w{chosen['weight']:g}_t{chosen['temperature']:g}/lr{lr:g}"
                rows[f"{model}, distilled"] = per_fold(distilled)
        rows = {name: folds for name, folds in rows.items() if folds}
        if not rows:
            return

        def paired(a, b):
            """Per-fold differences of two rows over the folds both have, with their mean and std."""
            folds = sorted(set(rows.get(a, {})) & set(rows.get(b, {})))
            if not folds:
                return None
            differences = [round(rows[a][f] - rows[b][f], 2) for f in folds]
            return dict(summary([{"test": {"top1": d}} for d in differences]), fold_numbers=folds)

        self.results["distillation"] = {
            "setting": chosen,
            "test_top1": {
                name: dict(summary([{"test": {"top1": v}} for v in folds.values()]), fold_numbers=sorted(folds))
                for name, folds in rows.items()
            },
            "paired_differences": {
                f"{a} minus {b}": d
                for a, b in [
                    *((f"{m}, distilled", "CNN14 (SpeechBrain)") for m in STUDENTS),
                    *((f"{m}, distilled", m) for m in STUDENTS),
                    ("DATAR-micro, distilled", "AST (DATAR-micro's size), distilled"),
                    ("DATAR-mini (AST's MACs), distilled", "AST (DATAR-micro's size), distilled"),
                    ("DATAR-micro", "AST (DATAR-micro's size)"),
                ]
                if (d := paired(a, b)) is not None
            },
        }
        self.save()

    def coarse_to_fine_tag(self):
        """The runs folder of the coarse-to-fine runs."""
        return f"{slug('DATAR-micro')}/coarse_to_fine/lr{self.chosen('lr', 'DATAR-micro'):g}"

    def summarise_coarse_to_fine(self):
        """Coarse-to-fine against full resolution on the ``--coarse-to-fine-folds`` that both finished."""
        runs = self.results["runs"]
        datar = "DATAR-micro"
        full_tag = (
            f"{slug(datar)}/{slug(self.chosen('augmentation') or DEFAULT_AUGMENTATION)}/lr{self.chosen('lr', datar):g}"
        )
        folds = [
            f
            for f in self.args.coarse_to_fine_folds
            if f"{self.coarse_to_fine_tag()}/fold{f}" in runs and f"{full_tag}/fold{f}" in runs
        ]
        if not folds:
            return
        coarse = [runs[f"{self.coarse_to_fine_tag()}/fold{f}"] for f in folds]
        full = [runs[f"{full_tag}/fold{f}"] for f in folds]
        self.results["coarse_to_fine"] = {
            "phases": COARSE_TO_FINE,
            "folds": folds,
            "test_top1": summary([{"test": {"top1": r["test_top1"]}} for r in coarse]),
            "full_resolution_test_top1": summary([{"test": {"top1": r["test_top1"]}} for r in full]),
            "train_seconds_total": [r["train_seconds_total"] for r in coarse],
            "full_resolution_train_seconds_total": [r["train_seconds_total"] for r in full],
        }
        self.save()

    def summarise_folds(self, models):
        """Mean and standard deviation over fold 1 and ``--folds`` of each model at its chosen rate."""
        folds = {}
        for model in models:
            runs = sorted(
                (
                    r
                    for r in self.results["runs"].values()
                    if r["model"] == model
                    and r["fold"] in [1, *self.args.folds]
                    and r["lr"] == self.chosen("lr", model)
                    and not r["extra"]
                    and r["augmentation"] == (self.chosen("augmentation") or DEFAULT_AUGMENTATION)
                ),
                key=lambda r: r["fold"],
            )
            if not runs:
                continue
            folds[model] = dict(
                summary([{"test": {"top1": r["test_top1"]}} for r in runs]),
                fold_numbers=[r["fold"] for r in runs],
                lr=self.chosen("lr", model),
                train_seconds_per_epoch=statistics.median(r["train_seconds_per_epoch"] for r in runs),
            )
        self.results["cross_validation"] = folds
        self.save()

    def report(self, models):
        """Prints the tables of the README (markdown) from what the JSON holds, and draws the curves."""
        sizes = self.results.get("models", {})
        rows = []
        for model, result in self.results.get("cross_validation", {}).items():
            rows.append(
                [
                    model,
                    f"{result['mean']:.1f} ± {result['std']:.1f}",
                    ", ".join(f"{v:.1f}" for v in result["folds"]),
                    ", ".join(str(f) for f in result.get("fold_numbers", [])),
                    f"{result['lr']:g}",
                    sizes.get(model, {}).get("parameters_M"),
                    sizes.get(model, {}).get("gmacs_5s"),
                    f"{result['train_seconds_per_epoch']:.1f}",
                ]
            )
        if rows:
            headers = ["model", "test top-1 (%)", "per fold", "folds", "lr", "params (M)", "GMACs (5 s)", "s/epoch"]
            print(table(headers, rows), end="\n\n")
        steps = self.results.get("training_step_seconds", {}).get("seconds", {})
        if steps:
            rows = [
                [m, sizes.get(m, {}).get("parameters_M"), sizes.get(m, {}).get("gmacs_5s"), f"{t:.2f}"]
                for m, t in steps.items()
            ]
            headers = ["model", "params (M)", "GMACs (5 s)", "training step, 16 clips (s)"]
            print(table(headers, rows), end="\n\n")
        searches = self.results.get("lr_search", {})
        if searches:
            first = self.results.get("lr_search_with_default_augmentation", {})
            rows = [
                [f"{m} ({augmentation})", *(search.get(f"{lr:g}", "-") for lr in self.args.lrs)]
                for searched, augmentation in ((first, DEFAULT_AUGMENTATION), (searches, self.chosen("augmentation")))
                for m, search in searched.items()
            ]
            print(
                table(["model (augmentation)", *(f"valid top-1 at {lr:g}" for lr in self.args.lrs)], rows), end="\n\n"
            )
        study = self.results.get("augmentation_study", {})
        if study:
            rows = [[a, r["best_valid_top1"], r["fold1_test_top1"]] for a, r in study.items()]
            print(table(["augmentation (DATAR-micro)", "valid top-1", "fold-1 test top-1"], rows), end="\n\n")
        c2f = self.results.get("coarse_to_fine")
        if c2f:
            rows = [
                [f"coarse to fine {c2f['phases']}", c2f["test_top1"]["folds"], c2f["train_seconds_total"]],
                [
                    "full resolution",
                    c2f["full_resolution_test_top1"]["folds"],
                    c2f["full_resolution_train_seconds_total"],
                ],
            ]
            print(table(["DATAR-micro", "test top-1 per fold", "training seconds per fold"], rows), end="\n\n")
        distillation = self.results.get("distillation")
        if distillation:
            rows = [
                [
                    name,
                    f"{r['mean']:.1f} ± {r['std']:.1f}",
                    ", ".join(f"{v:.1f}" for v in r["folds"]),
                    r["fold_numbers"],
                ]
                for name, r in distillation["test_top1"].items()
            ]
            rows += [
                [
                    name,
                    f"{r['mean']:+.1f} ± {r['std']:.1f}",
                    ", ".join(f"{v:+.1f}" for v in r["folds"]),
                    r["fold_numbers"],
                ]
                for name, r in distillation["paired_differences"].items()
            ]
            print(table(["model (distillation)", "test top-1 (%)", "per fold", "folds"], rows), end="\n\n")
        if self.results.get("distill_search"):
            rows = [[k, v] for k, v in self.results["distill_search"].items()]
            print(table(["DATAR-micro distilled from fold 1's CNN14", "valid top-1"], rows), end="\n\n")
        if self.args.plot:
            plot_curves(self.results, self.args.plot)
        if self.args.distillation_plot and self.results.get("distillation"):
            plot_distillation_curves(self.results, self.args.distillation_plot)


def model_hparams(model):
    """The hparams of ``model``'s runs (``MODELS``), loaded as its recipe loads them."""
    hparams_file, options = MODELS[model]
    overrides = {"data_folder": "/unused"}
    for option in options:
        key, value = option[2:].split("=", 1)
        overrides[key] = {"False": False, "none": "none"}.get(value, value)
    return load_hparams(os.path.join(ROOT, hparams_file), overrides)


def training_step_seconds(models, batch=16, repeats=5, device="cpu"):
    """Seconds of one training step (features, forward, loss, backward) on ``batch`` 5 s clips on ``device``, each
    model's steps measured in turn, round after round, in this one process (the median of ``repeats`` rounds): the
    per-epoch cost without the other runs that shared the cores."""
    from speechbrain_datar.nnet.classifier import Classifier

    device = torch.device(device)
    steps = {}
    for model in models:
        hparams = model_hparams(model)
        encoder, features = hparams["embedding_model"].train().to(device), hparams["compute_features"].to(device)
        wavs = 0.1 * torch.randn(batch, 5 * hparams["sample_rate"], device=device)
        with torch.no_grad():
            head = Classifier(encoder(features(wavs[:1])).shape[-1], 10).train().to(device)
        targets = {"label": torch.randint(0, 10, (batch,), device=device)}

        def step(encoder=encoder, head=head, features=features, wavs=wavs, targets=targets):
            """One forward and backward pass of the model on the fixed batch."""
            head.loss(head(encoder(features(wavs))), targets).backward()

        steps[model] = step
    times = {model: [] for model in models}
    for _ in range(repeats + 1):  # the first round warms up
        for model, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[model].append(time.perf_counter() - start)
    return {model: round(statistics.median(t[1:]), 3) for model, t in times.items()}


def model_sizes(models=tuple(MODELS)):
    """Parameters and MACs (every matrix product, attention included) of each model on one 5 s clip."""
    sizes = {}
    for model in models:
        hparams = model_hparams(model)
        encoder = hparams["embedding_model"].eval()
        feats = hparams["compute_features"](torch.zeros(1, 5 * hparams["sample_rate"]))
        sizes[model] = {
            "parameters_M": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 3),
            "gmacs_5s": round(count_macs(encoder, feats) / 1e9, 3),
        }
    return sizes


def plot_curves(results, path):
    """Validation top-1 over the epochs of each model's fold-1 run at its chosen rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    chosen = results.get("chosen", {})
    augmentation = chosen.get("augmentation", DEFAULT_AUGMENTATION)
    for run in results["runs"].values():
        if (
            run["fold"] == 1
            and not run["extra"]
            and run["augmentation"] == augmentation
            and run["lr"] == chosen.get(f"lr:{run['model']}", run["lr"])
        ):
            epochs = range(1, len(run["valid_top1"]) + 1)
            axis.plot(epochs, run["valid_top1"], label=f"{run['model']} (lr {run['lr']:g})")
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation top-1 (%)")
    axis.set_title("ESC-10, fold 1's split, trained from scratch")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def plot_distillation_curves(results, path):
    """Validation top-1 over the epochs on fold 1's split: each student with (solid) and without (dashed) its
    CNN14 teacher, and the teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setting = results["distillation"]["setting"]
    distilled_tag = f"distilled_w{setting['weight']:g}_t{setting['temperature']:g}"
    plain = results.get("chosen", {}).get("augmentation", DEFAULT_AUGMENTATION)
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for model, colour in zip((*STUDENTS, "DATAR-tiny", "CNN14 (SpeechBrain)"), ("C0", "C1", "C2", "C3", "k")):
        for key, run in results["runs"].items():
            if run["fold"] != 1 or run["model"] != model:
                continue
            distilled = f"/{distilled_tag}/" in key
            if not distilled and (
                run["augmentation"] != plain or run["lr"] != results["chosen"].get(f"lr:{model}", run["lr"])
            ):
                continue
            if not distilled and run["extra"] and not model.startswith("CNN14"):  # the search's other settings
                continue
            label = model + (", distilled" if distilled else "") + f" (test {run['test_top1']:.1f})"
            epochs = range(1, len(run["valid_top1"]) + 1)
            axis.plot(
                epochs,
                run["valid_top1"],
                colour,
                linestyle="-" if distilled or model.startswith("CNN14") else "--",
                label=label,
            )
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation top-1 (%)")
    axis.set_title(
        f"ESC-10, fold 1's split: with (solid, weight {setting['weight']:g}, T {setting['temperature']:g}) "
        "and without (dashed) the CNN14 teacher",
        fontsize=10,
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True, help="ESC-50 layout holding ESC-10 (meta/esc50.csv, audio/)")
    parser.add_argument("--results", required=True, help="folder of the runs")
    parser.add_argument("--json", default="docs/esc10_cpu.json")
    parser.add_argument("--plot", default="docs/esc10_valid_curves.png")
    parser.add_argument("--distillation-plot", default="docs/esc10_distillation_curves.png")
    parser.add_argument("--lrs", type=lambda s: [float(x) for x in s.split(",")], default=[3e-4, 1e-3, 3e-3])
    parser.add_argument(
        "--folds",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[2, 3, 4, 5],
        help="folds run after the searches (fold 1's runs come from the searches)",
    )
    parser.add_argument(
        "--coarse-to-fine-folds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3, 4, 5]
    )
    parser.add_argument(
        "--stages",
        type=lambda s: [x for x in s.split(",") if x],
        default=list(STAGES),
        help="comma-separated stages to run; empty (--stages=) only reports what the JSON holds",
    )
    parser.add_argument("--cnn14-folds", type=lambda s: [int(x) for x in s.split(",")], default=[1])
    parser.add_argument("--cnn14-lr", type=float, default=1e-3)
    parser.add_argument("--cnn14-epochs", type=int, default=30)
    parser.add_argument(
        "--tiny-epochs", type=int, default=None, help="epochs of DATAR-tiny's pair (default: the file's, 30)"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="runs at once, one thread each (training seconds are then not comparable to 1)",
    )
    add_device_argument(parser, "where the recipes train and the step times are measured: cpu or cuda")
    Benchmark(parser.parse_args(argv)).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
