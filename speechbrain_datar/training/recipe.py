"""What every classification recipe does after its data preparation: datasets, training,
evaluation on the best checkpoint, and export of the trained model.

A recipe's ``train.py`` prepares its data set (which is specific to it) and then
calls ``run_classification_recipe``.
"""

import json
import logging
import os
import shutil
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.labels import load_label_encoder
from speechbrain_datar.nnet.layers import unwrap_module
from speechbrain_datar.pretrained.checkpoint_import import init_from
from speechbrain_datar.pretrained.export import export_classifier
from speechbrain_datar.training.brain import AudioClassificationBrain, weights_fingerprint

logger = logging.getLogger(__name__)


def audio_pipeline(sample_rate, crop_seconds=None):
    """Dynamic item ``(path, start, stop) -> sig``; with ``crop_seconds``, a random crop of that length."""
    crop = None if crop_seconds is None else int(round(crop_seconds * sample_rate))

    @sb.utils.data_pipeline.takes("path", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def pipeline(path, start, stop):
        wav = load_clip(path, sample_rate, start, stop)
        if crop is not None and wav.shape[0] > crop:
            offset = int(torch.randint(0, wav.shape[0] - crop + 1, ()).item())
            wav = wav[offset : offset + crop]
        return wav

    return pipeline


def label_pipeline(key, encoder):
    """Dynamic item ``key -> key_encoded``; an unknown label is a clear error."""

    @sb.utils.data_pipeline.takes(key)
    @sb.utils.data_pipeline.provides(f"{key}_encoded")
    def pipeline(label):
        if label not in encoder.lab2ind:
            raise KeyError(f"label {label!r} was not seen in training; re-run data preparation")
        return torch.LongTensor([encoder.lab2ind[label]])

    return pipeline


def build_datasets(manifests, label_encoders, sample_rate, crop_seconds):
    """``DynamicItemDataset`` per split; training clips are randomly cropped to ``crop_seconds``.

    Evaluation splits are sorted by duration so that batches hold clips of similar length.
    """
    datasets = {}
    for split, path in manifests.items():
        dataset = sb.dataio.dataset.DynamicItemDataset.from_json(path)
        if split != "train":
            dataset = dataset.filtered_sorted(sort_key="duration")
        items = [audio_pipeline(sample_rate, crop_seconds if split == "train" else None)]
        items += [label_pipeline(key, encoder) for key, encoder in label_encoders.items()]
        sb.dataio.dataset.add_dynamic_item([dataset], items[0])
        for item in items[1:]:
            sb.dataio.dataset.add_dynamic_item([dataset], item)
        keys = ["id", "sig"] + [f"{key}_encoded" for key in label_encoders]
        sb.dataio.dataset.set_output_keys([dataset], keys)
        datasets[split] = dataset
    return datasets


def check_head_sizes(classifier, label_encoders):
    """The classifier's output sizes must match the prepared labels."""
    head = unwrap_module(classifier)
    heads = head.heads if hasattr(head, "heads") else {"label": head}
    sizes = {key: len(encoder) for key, encoder in label_encoders.items()}
    suggestion = f"--n_classes={sizes['label']}" if list(sizes) == ["label"] else (
        '--classifier_heads="{' + ", ".join(f"{k}: {v}" for k, v in sizes.items()) + '}"'
    )
    actual = {key: heads[key].out.out_features for key in heads}
    if set(actual) != set(sizes) or any(actual[k] != sizes[k] for k in sizes):
        raise ValueError(
            f"the data has {sizes} classes but the classifier has {actual}: pass {suggestion}"
        )


def exported_extras(save_folder):
    """Preparation outputs that travel with the exported model (``class_names.json``, if any)."""
    path = os.path.join(save_folder, "class_names.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return {"class_names.json": json.load(f)}


def run_classification_recipe(hparams, run_opts, label_keys=("label",)):
    """Trains, evaluates the best checkpoint on the test set, and exports the model.

    Expects in ``save_folder`` the outputs of data preparation: ``train.json``,
    ``valid.json``, ``test.json``, a label encoder per key
    (``label_encoder.txt`` or ``label_encoder_<key>.txt``) and ``norm_stats.json``.

    Returns
    -------
    AudioClassificationBrain
        The brain after testing (``brain.test_stats`` holds the test metrics).
    """
    save = hparams["save_folder"]
    label_encoders = {
        key: load_label_encoder(
            os.path.join(save, "label_encoder.txt" if key == "label" else f"label_encoder_{key}.txt")
        )
        for key in label_keys
    }
    check_head_sizes(hparams["classifier"], label_encoders)
    if hparams.get("init_from"):
        # Checkpoints of this run, if any, are recovered later and take precedence.
        report = init_from(
            hparams["embedding_model"], hparams["init_from"],
            report_path=os.path.join(hparams["output_folder"], "init_report.json"),
        )
        logger.info("initialised the encoder: %s", report.summary())
    hparams["mean_var_norm"].load_stats(os.path.join(save, "norm_stats.json"))
    schedule = hparams.get("coarse_to_fine")
    if schedule is not None and schedule.enabled and hparams["epoch_counter"].limit != schedule.total_epochs:
        logger.info("coarse-to-fine: %d epochs over the phases %s", schedule.total_epochs, schedule.phases)
        hparams["epoch_counter"].limit = schedule.total_epochs
    manifests = {split: os.path.join(save, f"{split}.json") for split in ("train", "valid", "test")}
    datasets = build_datasets(manifests, label_encoders, hparams["sample_rate"], hparams["clip_seconds"])

    brain = AudioClassificationBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        label_encoders=label_encoders,
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    print(f"rank {os.environ.get('RANK', 0)} final weights fingerprint "
          f"{weights_fingerprint(torch.nn.ModuleList(hparams['modules'].values()))}", flush=True)
    brain.evaluate(
        datasets["test"], max_key=brain.main_metric, test_loader_kwargs=hparams["test_dataloader_opts"]
    )
    if sb.utils.distributed.if_main_process():
        folder = export_classifier(
            hparams["export_folder"],
            encoder=brain.modules.embedding_model,
            head=brain.modules.classifier,
            normalizer=hparams["mean_var_norm"],
            label_encoders=label_encoders,
            feature_options=hparams["feature_options"],
            window_frames=hparams["eval_window_frames"],
            hop_frames=hparams["eval_hop_frames"],
            sample_rate=hparams["sample_rate"],
            extra_files=dict(exported_extras(save), **{"test_metrics.json": brain.test_stats}),
        )
        logger.info("exported the trained model to %s", folder)
        with open(os.path.join(hparams["output_folder"], "test_metrics.json"), "w") as f:
            json.dump(brain.test_stats, f, indent=2)
    return brain


def recipe_main(argv, prepare, label_keys=("label",)):
    """The whole ``train.py`` of a recipe: parse, prepare once, train, test, export.

    ``prepare`` is the recipe's preparation function; it receives ``data_folder``,
    ``save_folder``, ``valid_ratio``, ``seed``, ``compute_features``, ``sample_rate``,
    ``stats_max_clips`` and ``skip_prep`` from the hparams, plus the entries of the
    optional ``prepare_options`` dict. Bad input ends the run with a one-line message.
    """
    try:
        hparams_file, run_opts, overrides = sb.parse_arguments(argv)
        sb.utils.distributed.ddp_init_group(run_opts)
        with open(hparams_file) as fin:
            hparams = load_hyperpyyaml(fin, overrides)
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )
        if sb.utils.distributed.if_main_process() and os.path.isfile(sys.argv[0]):
            shutil.copy(sys.argv[0], hparams["output_folder"])  # the recipe's own train.py
        kwargs = {
            key: hparams[key]
            for key in ("data_folder", "save_folder", "valid_ratio", "seed", "compute_features",
                        "sample_rate", "stats_max_clips", "skip_prep")
        }
        kwargs.update(hparams.get("prepare_options") or {})
        sb.utils.distributed.run_on_main(prepare, kwargs=kwargs)
        brain = run_classification_recipe(hparams, run_opts, label_keys=label_keys)
        sb.utils.distributed.ddp_barrier()  # every process ends after the export
        return brain
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as error:
        sys.exit(f"error: {error}")
    finally:
        # A process group left to the interpreter's exit can abort the process
        # ("terminate called without an active exception") after a good run.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
