"""What every classification recipe does after its data preparation: datasets, training,
evaluation on the best checkpoint, and export of the trained model.

A recipe's ``train.py`` names its data set's preparation function (and, for a data
set with several heads, its label keys and joint metrics) and calls ``recipe_main``.
"""

import json
import logging
import os
import shutil
import sys

import speechbrain as sb
import torch

from speechbrain_datar.dataio.frames import SAMPLINGS
from speechbrain_datar.dataio.labels import class_balanced_weights, label_encoder_file, load_label_encoder
from speechbrain_datar.dataio.manifest import read_manifest
from speechbrain_datar.dataio.pipelines import build_datasets
from speechbrain_datar.dataio.prepare import labels_of, prepare_dataset
from speechbrain_datar.dataio.shards import (
    ShardStream,
    open_shard_folder,
    shard_eval_dataset,
    shard_settings,
    write_shards,
)
from speechbrain_datar.deprecation import warn_moved
from speechbrain_datar.errors import DataError
from speechbrain_datar.inference.precision import PRECISION_CHOICES
from speechbrain_datar.nnet.layers import unwrap_module
from speechbrain_datar.pretrained.checkpoint_import import init_from
from speechbrain_datar.pretrained.export import export_recipe_model
from speechbrain_datar.training.brain import AudioClassificationBrain
from speechbrain_datar.training.distillation import SCORES_FILE, TeacherScores, prepare_teacher_scores
from speechbrain_datar.training.hparams import check_dataset, load_hparams

__all__ = ["DATA_FORMATS", "load_hparams", "recipe_main", "run_classification_recipe", "validate_options"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
#: Damaged clips and shards met while reading shards, one JSON line each (``dataio.shards.DamageReport``).
SHARD_DAMAGE_FILE = "shard_damage.jsonl"
DATA_FORMATS = ("files", "shards")
#: Below this, a learning rate is a fine-tuning rate (the paper's is 1e-5).
FINE_TUNING_LR = 1e-4


def fit_heads_to_labels(classifier, label_encoders):
    """Sizes the classifier's outputs from the prepared labels; an output whose size was set must match them.

    A head of one output takes the name of the one label key (``label``, or ``labels`` for tagging)."""
    head = unwrap_module(classifier)
    sizes = {key: len(encoder) for key, encoder in label_encoders.items()}
    actual = head.n_classes_by_name
    if len(actual) == 1 and len(sizes) == 1:
        actual = {next(iter(sizes)): next(iter(actual.values()))}
    if set(actual) != set(sizes) or any(actual[k] not in (None, sizes[k]) for k in sizes):
        single_key = next(iter(sizes))
        suggestion = (
            f"--n_classes={sizes[single_key]}"
            if len(sizes) == 1
            else ('--classifier_heads="{' + ", ".join(f"{k}: {v}" for k, v in sizes.items()) + '}"')
        )
        raise DataError(
            f"the data has {sizes} classes but the classifier has {head.n_classes_by_name}: pass {suggestion}"
        )
    head.set_n_classes(sizes)


def prepared_label_keys(save_folder, default=None):
    """The label keys preparation wrote (``label_keys.json``), in order; ``default`` (or ``("label",)``) for a
    folder prepared by version 0.2."""
    path = os.path.join(save_folder, "label_keys.json")
    if not os.path.isfile(path):
        return tuple(default or ("label",))
    with open(path) as f:
        return tuple(json.load(f))


def prepared_label_encoders(save_folder, label_keys=None):
    """``{key: CategoricalEncoder}`` of a prepared folder, in its label keys' order (``prepared_label_keys``)."""
    keys = prepared_label_keys(save_folder, label_keys)
    return {key: load_label_encoder(os.path.join(save_folder, label_encoder_file(key))) for key in keys}


def exported_extras(save_folder):
    """Preparation outputs that travel with the exported model (``class_names.json``, if any)."""
    path = os.path.join(save_folder, "class_names.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return {"class_names.json": json.load(f)}


def warn_if_fine_tuning_rate_from_scratch(hparams):
    """One log line when a model that starts from scratch gets the paper's fine-tuning learning rate."""
    if not hparams["init_from"] and hparams["lr"] < FINE_TUNING_LR:
        logger.warning(
            "lr %g is a fine-tuning rate for ImageNet-initialised models (--init_from=...); from scratch it "
            "barely learns: use the from-scratch setting of the hparams (e.g. --lr=5e-4 --warmup_epochs=2 "
            "--lr_decay=cosine)",
            hparams["lr"],
        )


def train_loader_options(hparams, train_set, label_keys):
    """The training loader's options; with ``balanced_sampling``, a sampler that draws clips (with replacement,
    one epoch's worth) with weights that balance the classes of the first label key."""
    options = dict(hparams["train_dataloader_opts"])
    if not hparams["balanced_sampling"]:
        return options
    with train_set.output_keys_as([label_keys[0]]):
        label_lists = [labels_of(item[label_keys[0]]) for item in train_set]
    weights = class_balanced_weights(label_lists)
    options.update(
        shuffle=False,
        sampler=sb.dataio.sampler.ReproducibleWeightedRandomSampler(
            weights, num_samples=len(weights), replacement=True, seed=hparams["seed"]
        ),
    )
    return options


def run_classification_recipe(hparams, run_opts, label_keys=None, main_metric=None, extra_statistics=()):
    """Trains, evaluates the best checkpoint on the test set, and exports the model.

    Expects in ``save_folder`` the outputs of data preparation: ``train.json``,
    ``valid.json``, ``test.json``, ``label_keys.json``, a label encoder per key and ``norm_stats.json``
    (``label_keys`` stands for ``label_keys.json`` in folders prepared by version 0.2).

    Returns
    -------
    AudioClassificationBrain
        The brain after testing (``brain.test_stats`` holds the test metrics).
    """
    save = hparams["save_folder"]
    label_keys = prepared_label_keys(save, label_keys)
    label_encoders = prepared_label_encoders(save, label_keys)
    fit_heads_to_labels(hparams["classifier"], label_encoders)
    if hparams["init_from"]:
        # Checkpoints of this run, if any, are recovered later and take precedence.
        report = init_from(
            hparams["embedding_model"],
            hparams["init_from"],
            report_path=os.path.join(hparams["output_folder"], "init_report.json"),
        )
        logger.info("initialised the encoder: %s", report.summary())
    else:
        warn_if_fine_tuning_rate_from_scratch(hparams)
    hparams["mean_var_norm"].load_stats(os.path.join(save, "norm_stats.json"))
    schedule = hparams["coarse_to_fine"]
    if schedule is not None and schedule.enabled and hparams["epoch_counter"].limit != schedule.total_epochs:
        logger.info("coarse-to-fine: %d epochs over the phases %s", schedule.total_epochs, schedule.phases)
        hparams["epoch_counter"].limit = schedule.total_epochs
    if hparams["data_format"] == "shards":
        datasets, train_options = shard_datasets(hparams, label_encoders, label_keys)
    else:
        frames = dict(frame_options(hparams), eval_crops=hparams["eval_crops"])
        datasets = build_datasets(
            prepared_manifests(save), label_encoders, hparams["sample_rate"], hparams["clip_seconds"], frames
        )
        train_options = train_loader_options(hparams, datasets["train"], label_keys)

    teacher_scores = None
    if hparams["distillation"].active:
        folder = hparams["shards_folder"] if hparams["data_format"] == "shards" else save
        teacher_scores = TeacherScores.load(os.path.join(folder, SCORES_FILE))
        logger.info(
            "distillation: weight %g, temperature %g", hparams["distill_weight"], hparams["distill_temperature"]
        )
    brain = AudioClassificationBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        label_encoders=label_encoders,
        main_metric=main_metric,
        extra_statistics=extra_statistics,
        teacher_scores=teacher_scores,
    )
    if hparams["data_format"] == "shards":
        # The stream deals its shards anew each epoch (Brain calls set_epoch on its train_sampler) and, in an
        # epoch resumed from an intra-epoch checkpoint, leaves out the batches the Brain's step says were made.
        brain.train_sampler = datasets["train"]
        datasets["train"].steps_done = lambda: brain.step
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_options,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(datasets["test"], max_key=brain.main_metric, test_loader_kwargs=hparams["test_dataloader_opts"])
    if sb.utils.distributed.if_main_process():
        folder = export_recipe_model(
            hparams,
            brain.modules,
            label_encoders,
            extra_files=dict(exported_extras(save), **{"test_metrics.json": brain.test_stats}),
        )
        logger.info("exported the trained model to %s", folder)
        with open(os.path.join(hparams["output_folder"], "test_metrics.json"), "w") as f:
            json.dump(brain.test_stats, f, indent=2)
    return brain


def prepared_manifests(save_folder):
    """``{split: manifest path}`` of a prepared folder."""
    return {split: os.path.join(save_folder, f"{split}.json") for split in SPLITS}


def recipe_shard_settings(hparams):
    """The settings the recipe's shards are written with (``dataio.shards.shard_settings``)."""
    frames = dict(frame_options(hparams), eval_crops=hparams["eval_crops"])
    return shard_settings(hparams["sample_rate"], hparams["clip_seconds"], frames, hparams["shard_frame_rate"])


def recipe_teacher_scores(hparams, label_keys=None):
    """The teacher's scores of the training clips, computed once into ``save_folder`` (or read back) when the
    recipe distils (``training.distillation``); ``None`` otherwise."""
    if not hparams["distillation"].active:
        return None
    save = hparams["save_folder"]
    return prepare_teacher_scores(hparams["distillation"], save, prepared_label_encoders(save, label_keys))


def write_recipe_shards(hparams):
    """Writes (or finishes) the recipe's shards from its prepared manifests into ``shards_folder``; the
    teacher's scores, when the recipe distils, travel with them (a copy refreshed on every run, so that a new
    teacher needs no new shards)."""
    scores = os.path.join(hparams["save_folder"], SCORES_FILE)
    if hparams["distillation"].active and os.path.isfile(scores):
        os.makedirs(hparams["shards_folder"], exist_ok=True)
        TeacherScores.load(scores).save(os.path.join(hparams["shards_folder"], SCORES_FILE))
    report = write_shards(
        prepared_manifests(hparams["save_folder"]),
        hparams["shards_folder"],
        recipe_shard_settings(hparams),
        shard_megabytes=hparams["shard_megabytes"],
        seed=hparams["seed"],
        workers=hparams["num_workers"],
    )
    for split, numbers in report.items():
        logger.info(
            "shards (%s): %d clips, %d shards, %.1f MiB, %d left out (%s)",
            split,
            numbers["clips"],
            numbers["shards"],
            numbers["bytes"] / 2**20,
            len(numbers["skipped"]),
            os.path.join(hparams["shards_folder"], "shards_report.json"),
        )
    return report


def balanced_draws(manifest, label_key):
    """Clip id -> expected uses per epoch that balance the classes of ``label_key`` (``balanced_sampling``
    from shards: as many draws in all as clips, as the weighted sampler of the files makes)."""
    entries = read_manifest(manifest)
    weights = class_balanced_weights([labels_of(entry[label_key]) for entry in entries.values()])
    scale = len(weights) / sum(weights)
    return {clip_id: weight * scale for clip_id, weight in zip(entries, weights)}


def shard_datasets(hparams, label_encoders, label_keys):
    """The training stream and the evaluation sets from the recipe's shards, and the training loader's options."""
    manifests = prepared_manifests(hparams["save_folder"])
    settings = recipe_shard_settings(hparams)
    shards = open_shard_folder(hparams["shards_folder"], manifests, settings)
    options = dict(hparams["train_dataloader_opts"])
    workers = options.get("num_workers", 0)
    damage_report = os.path.join(hparams["output_folder"], SHARD_DAMAGE_FILE)
    datasets = {
        "train": ShardStream(
            shards["train"],
            label_encoders,
            settings,
            hparams["clip_seconds"],
            options["batch_size"],
            num_workers=workers,
            shuffle_buffer=hparams["shuffle_buffer"],
            seed=hparams["seed"],
            expected_draws=balanced_draws(manifests["train"], label_keys[0]) if hparams["balanced_sampling"] else None,
            entries=read_manifest(manifests["train"]),
            damage_report=damage_report,
        )
    }
    for split in ("valid", "test"):
        datasets[split] = shard_eval_dataset(shards[split], manifests[split], label_encoders, settings, damage_report)
    return datasets, {"batch_size": None, "num_workers": workers}  # the stream makes the batches


def frame_options(hparams):
    """Which frames a clip gives: ``n_frames``, ``size``, ``sampling``, ``stride`` (``n_frames`` 0: none)."""
    return {
        "n_frames": hparams["n_frames"],
        "size": hparams["frame_size"],
        "sampling": hparams["frame_sampling"],
        "stride": hparams["frame_stride"],
    }


def audio_visual_export(hparams):
    """Version 0.2's evaluation protocol of an exported audio-visual model (``None`` for audio models)."""
    warn_moved("recipe.audio_visual_export(hparams)", "the hparams' evaluation object (export_recipe_model)")
    if not hparams["n_frames"]:
        return None
    return dict(
        clip_seconds=hparams["clip_seconds"],
        eval_crops=hparams["eval_crops"],
        frame_norm=hparams["frame_norm"],
        frames=frame_options(hparams),
    )


#: Options with a fixed set of choices that objects built from the YAML do not check themselves (the export's
#: precision is read at the very end of a run): all checked before anything runs.
OPTION_CHOICES = {"export_precision": PRECISION_CHOICES, "data_format": DATA_FORMATS, "frame_sampling": SAMPLINGS}


def validate_options(hparams):
    """Checks, before preparation and the first step, the options that only the later stages of a run use:
    ``DataError`` names the option and its choices (a typo must not cost a finished run).

    Example
    -------
    >>> validate_options({"export_precision": "int4", "data_format": "files", "frame_sampling": "uniform",
    ...                   "n_frames": 0, "tagging_threshold": 0.5})
    Traceback (most recent call last):
    ...
    speechbrain_datar.errors.DataError: --export_precision must be one of ('auto', 'fp32', 'bf16', 'int8'), got 'int4'
    """
    for name, choices in OPTION_CHOICES.items():
        if hparams[name] not in choices:
            raise DataError(f"--{name} must be one of {choices}, got {hparams[name]!r}")
    if hparams["n_frames"] and hparams["export_precision"] not in ("fp32", "auto"):
        raise DataError(
            f"--export_precision {hparams['export_precision']}: audio-visual models are exported in fp32 only"
        )
    threshold = hparams["tagging_threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise DataError(f"--tagging_threshold must be a probability in [0, 1], got {threshold!r}")


#: Options that take an augmenter, given on the command line as an object (``"!ref <spec_augment>"``) or by
#: its name in the file's ``augmentations`` (``--feature_augment=spec_augment``).
AUGMENTATION_OPTIONS = ("wave_augment", "feature_augment")


def choose_named_augmentations(hparams):
    """Replaces an augmentation option given by name with the file's augmenter of that name, before anything
    runs; ``DataError`` names an unknown one and the names the file defines.

    Example
    -------
    >>> hparams = {"wave_augment": None, "feature_augment": "spec_augment", "augmentations": {"spec_augment": "masks"}}
    >>> choose_named_augmentations(hparams)["feature_augment"]
    'masks'
    >>> choose_named_augmentations({"wave_augment": "noise", "feature_augment": None, "augmentations": {}})
    Traceback (most recent call last):
    ...
    speechbrain_datar.errors.DataError: --wave_augment 'noise' is no augmentation of this file's; its augmentations: []
    """
    named = hparams.get("augmentations") or {}
    for option in AUGMENTATION_OPTIONS:
        value = hparams[option]
        if isinstance(value, str):
            if value not in named:
                raise DataError(
                    f"--{option} {value!r} is no augmentation of this file's; its augmentations: {sorted(named)}"
                )
            hparams[option] = named[value]
    return hparams


def dataset_options(hparams):
    """The arguments of the data set's preparation: ``data_folder``, ``prepare_options``, and ``need_video``
    when the recipe reads frames (so that videos without picture are reported, not trained on)."""
    options = dict(data_folder=hparams["data_folder"], **(hparams["prepare_options"] or {}))
    if hparams["n_frames"]:
        options.setdefault("need_video", True)
    return options


def recipe_main(argv, prepare, label_keys=None, main_metric=None, extra_statistics=(), dataset=None):
    """The whole ``train.py`` of a recipe: parse, prepare once, (write shards once,) train, test, export.

    ``prepare`` is the data set's preparation function (it takes ``data_folder`` and
    the entries of the hparams' ``prepare_options``); ``dataset`` is the recipe's data set (an hparams
    file written for another is refused, naming the file to use); ``main_metric`` and ``extra_statistics`` go to the
    ``AudioClassificationBrain``. The label keys are those preparation wrote (``label_keys``: for
    folders prepared by version 0.2). A ``DataError`` (bad data or configuration) ends the run with
    a one-line message; anything else propagates with its traceback. With ``data_format: shards`` the
    prepared manifests are written into ``shards_folder`` once (``write_shards_only`` stops there) and
    training and evaluation read the shards.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    try:
        hparams = load_hparams(hparams_file, overrides)
        check_dataset(hparams, hparams_file, dataset)
        validate_options(hparams)
        choose_named_augmentations(hparams)
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )
        if sb.utils.distributed.if_main_process() and os.path.isfile(sys.argv[0]):
            shutil.copy(sys.argv[0], hparams["output_folder"])  # the recipe's own train.py
        sb.utils.distributed.run_on_main(
            prepare_dataset,
            args=[prepare, hparams["save_folder"]],
            kwargs=dict(
                dataset_options=dataset_options(hparams),
                valid_ratio=hparams["valid_ratio"],
                seed=hparams["seed"],
                compute_features=hparams["compute_features"],
                sample_rate=hparams["sample_rate"],
                stats_max_clips=hparams["stats_max_clips"],
                skip_prep=hparams["skip_prep"],
            ),
        )
        sb.utils.distributed.run_on_main(recipe_teacher_scores, args=[hparams, label_keys])
        if hparams["data_format"] == "shards" or hparams["write_shards_only"]:
            sb.utils.distributed.run_on_main(write_recipe_shards, args=[hparams])
            if hparams["write_shards_only"]:
                return None
        brain = run_classification_recipe(hparams, run_opts, label_keys, main_metric, extra_statistics)
        sb.utils.distributed.ddp_barrier()  # every process ends after the export
        return brain
    except DataError as error:
        sys.exit(f"error: {error}")
    finally:
        # A process group left to the interpreter's exit can abort the process
        # ("terminate called without an active exception") after a good run.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
