"""Distillation: the term against hand-computed values, the teacher's scores computed once and recomputed when
the teacher changes, and teachers with other classes refused in one line."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import soundfile
import torch
from conftest import TEST_DATA
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_datar.errors import DataError
from speechbrain_datar.nnet.classifier import Classifier, build_classifier
from speechbrain_datar.training.distillation import (
    SCORES_FILE,
    Distillation,
    TeacherScores,
    fill_missing,
    prepare_teacher_scores,
)
from speechbrain_datar.training.mixup import MixedBatch

STUDENT_LOGITS = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]
TEACHER_PROBS = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]


def head_with_logits(logits, multi_label=False):
    """A head's ``forward`` output for given logits (its log-softmax or log-sigmoid)."""
    head = Classifier(4, len(logits[0]), multi_label=multi_label)
    return head, {"label": head.log_probabilities(torch.tensor(logits)).unsqueeze(1)}


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_single_label_term_is_t_squared_kl_at_temperature():
    head, predictions = head_with_logits(STUDENT_LOGITS)
    temperature = 2.0
    expected = 0.0
    for logits, teacher in zip(STUDENT_LOGITS, TEACHER_PROBS):
        p = softmax([math.log(t) / temperature for t in teacher])
        q = softmax([z / temperature for z in logits])
        expected += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    expected = expected / len(STUDENT_LOGITS) * temperature**2
    got = head.distillation_loss(predictions, {"label": torch.tensor(TEACHER_PROBS)}, temperature)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_multi_label_term_is_binary_cross_entropy_against_the_teachers_probabilities():
    head, predictions = head_with_logits(STUDENT_LOGITS, multi_label=True)
    terms = []
    for logits, teacher in zip(STUDENT_LOGITS, TEACHER_PROBS):
        for z, t in zip(logits, teacher):
            p = 1 / (1 + math.exp(-z))
            terms.append(-(t * math.log(p) + (1 - t) * math.log(1 - p)))
    got = head.distillation_loss(predictions, {"label": torch.tensor(TEACHER_PROBS)}, temperature=5.0)
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-5)  # no temperature for tags


def test_mixup_mixes_the_teachers_targets_like_the_labels():
    head, predictions = head_with_logits(STUDENT_LOGITS)
    teacher = torch.tensor(TEACHER_PROBS)
    mix = MixedBatch([0.3], torch.tensor([1, 0]))
    got = head.distillation_loss(predictions, {"label": teacher}, 1.0, mix)
    mixed = 0.3 * teacher + 0.7 * teacher[[1, 0]]
    student = predictions["label"].squeeze(1)
    expected = (mixed * (mixed.log() - student)).sum(-1).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_two_heads_add_their_terms_and_the_loss_is_weighted():
    head = build_classifier(4, heads={"verb": 3, "noun": 3})
    with torch.no_grad():
        predictions = head(torch.randn(2, 4))
    teacher = {"verb": torch.tensor(TEACHER_PROBS), "noun": torch.tensor(TEACHER_PROBS[::-1])}
    each = [head.heads[k].distillation_loss(predictions, teacher, 2.0) for k in ("verb", "noun")]
    assert float(head.distillation_loss(predictions, teacher, 2.0)) == pytest.approx(float(sum(each)))
    distillation = Distillation(0.25, 2.0, teacher_scores="scores.json")
    task = torch.tensor(1.5)
    combined = distillation.combine(task, head, predictions, teacher)
    assert float(combined) == pytest.approx(0.75 * 1.5 + 0.25 * float(sum(each)), rel=1e-6)
    # weight 0: the task loss itself, untouched
    assert Distillation(0.0, 2.0, teacher_scores="scores.json").combine(task, head, predictions, teacher) is task


def test_a_clip_without_teacher_scores_gives_no_gradient():
    head, _ = head_with_logits(STUDENT_LOGITS)
    logits = torch.tensor(STUDENT_LOGITS, requires_grad=True)
    predictions = {"label": torch.log_softmax(logits, -1).unsqueeze(1)}
    teacher = {"label": torch.tensor([TEACHER_PROBS[0], [float("nan")] * 3])}
    head.distillation_loss(predictions, fill_missing(teacher, predictions), 2.0).backward()
    assert logits.grad[1].abs().max() < 1e-7 and logits.grad[0].abs().max() > 1e-3


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(weight=-0.1), "distill_weight must be in"),
        (dict(weight="half"), "distill_weight must be a number"),
        (dict(temperature=0), "distill_temperature must be a positive"),
        (dict(teacher="a", teacher_scores="b"), "not both"),
        (dict(teacher_precision="int4"), "teacher_precision must be one of"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(DataError, match=message):
        Distillation(**dict(dict(weight=0.5, temperature=2.0), **options))


# ------------------------------------------------------------------------------------- the teacher's scores
def encoders(names, key="label"):
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(names)
    return {key: encoder}


def prepared_folder(tmp_path, n_clips=3):
    """A save folder with a training manifest of short generated clips."""
    save = tmp_path / "save"
    save.mkdir()
    entries = {}
    for i in range(n_clips):
        path = tmp_path / f"clip{i}.wav"
        t = np.arange(8000) / 16000
        soundfile.write(path, (0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t)).astype("float32"), 16000)
        entries[f"clip{i}"] = {"path": str(path), "duration": 0.5, "label": "a"}
    (save / "train.json").write_text(json.dumps(entries))
    return str(save), list(entries)


def write_scores(path, classes, clips):
    path.write_text(json.dumps({"classes": {"label": classes}, "probabilities": clips}))


def test_scores_file_is_read_once_in_the_recipes_class_order_and_again_when_it_changes(tmp_path, caplog):
    save, ids = prepared_folder(tmp_path)
    scores_file = tmp_path / "scores.json"
    write_scores(scores_file, ["b", "a"], {i: {"label": [0.25, 0.75]} for i in ids})
    distillation = Distillation(0.5, 2.0, teacher_scores=str(scores_file))
    first = prepare_teacher_scores(distillation, save, encoders(["a", "b"]))
    assert first.batch(ids[:1])["label"].tolist() == [[0.75, 0.25]]  # columns follow the recipe's classes
    stored = os.path.join(save, SCORES_FILE)
    written = os.stat(stored).st_mtime_ns
    with caplog.at_level("INFO"):
        again = prepare_teacher_scores(distillation, save, encoders(["a", "b"]))
    assert "reusing" in caplog.text and os.stat(stored).st_mtime_ns == written
    assert again.batch(ids)["label"].tolist() == first.batch(ids)["label"].tolist()
    write_scores(scores_file, ["b", "a"], {i: {"label": [0.5, 0.5]} for i in ids})
    changed = prepare_teacher_scores(distillation, save, encoders(["a", "b"]))
    assert changed.batch(ids[:1])["label"].tolist() == [[0.5, 0.5]]
    assert TeacherScores.load(stored).fingerprint == changed.fingerprint != first.fingerprint


def test_a_teacher_with_other_classes_is_one_line(tmp_path):
    save, ids = prepared_folder(tmp_path)
    scores_file = tmp_path / "scores.json"
    write_scores(scores_file, ["a", "c"], {i: {"label": [0.5, 0.5]} for i in ids})
    with pytest.raises(DataError) as error:
        prepare_teacher_scores(Distillation(0.5, 2.0, teacher_scores=str(scores_file)), save, encoders(["a", "b"]))
    assert "\n" not in str(error.value)
    assert "the data's ['b'] are not among the teacher's" in str(error.value)
    assert "the teacher's ['c'] are not among the data's" in str(error.value)
    assert not os.path.exists(os.path.join(save, SCORES_FILE))


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not a scores file"),
        ('{"classes": [], "probabilities": {}}', "not a scores file"),
        ('{"classes": {"label": ["a", "b"]}, "probabilities": {"clip0": {"label": [1e999, 0]}}}', "finite"),
        ('{"classes": {"label": ["a", "b"]}, "probabilities": {"other": {"label": [0.5, 0.5]}}}', "none of the"),
    ],
)
def test_damaged_scores_files_are_one_line(tmp_path, content, message):
    save, _ = prepared_folder(tmp_path)
    (tmp_path / "scores.json").write_text(content)
    with pytest.raises(DataError, match=message):
        prepare_teacher_scores(
            Distillation(0.5, 2.0, teacher_scores=str(tmp_path / "scores.json")), save, encoders(["a", "b"])
        )


def test_a_teacher_model_scores_each_clip_as_its_export_classifies_it_and_again_after_it_changes(tmp_path):
    from speechbrain_datar.inference.interfaces import StreamingClassifier

    teacher = tmp_path / "teacher"
    shutil.copytree(os.path.join(TEST_DATA, "datar_v0_2"), teacher)
    model = StreamingClassifier.from_hparams(source=str(teacher), savedir=str(tmp_path / "loaded"))
    names = [model.hparams.label_encoder.ind2lab[i] for i in range(len(model.hparams.label_encoder))]
    save, ids = prepared_folder(tmp_path)
    recipe = encoders(list(reversed(names)))
    distillation = Distillation(0.5, 2.0, teacher=str(teacher))
    scores = prepare_teacher_scores(distillation, save, recipe)
    entries = json.load(open(os.path.join(save, "train.json")))
    order = [names.index(recipe["label"].ind2lab[i]) for i in range(len(names))]
    for clip_id in ids:
        expected = model.classify_file(entries[clip_id]["path"])[0].exp()[0, order]
        assert torch.allclose(scores.batch([clip_id])["label"][0], expected, atol=1e-5)
    # new weights in the teacher's folder: the scores are computed again
    state = torch.load(teacher / "classifier.ckpt")
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, teacher / "classifier.ckpt")
    assert prepare_teacher_scores(distillation, save, recipe).fingerprint != scores.fingerprint
    with pytest.raises(DataError, match="not among the teacher's"):
        prepare_teacher_scores(distillation, save, encoders(names[:-1] + ["someone else"]))


SPEECHBRAIN_CLASSIFIER = """
sample_rate: 16000
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 24
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: 24
    tdnn_channels: [16, 16, 16, 16, 32]
    lin_neurons: 16
classifier: !new:speechbrain.lobes.models.Xvector.Classifier
    input_shape: [null, null, 16]
    lin_neurons: 16
    out_neurons: 3
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: {folder}/embedding_model.ckpt
        classifier: {folder}/classifier.ckpt
        label_encoder: {folder}/label_encoder.txt
"""


def speechbrain_classifier_folder(folder, names):
    """A folder as SpeechBrain's own recipes publish a classifier (an x-vector here, as small as it gets)."""
    from hyperpyyaml import load_hyperpyyaml

    folder.mkdir()
    text = SPEECHBRAIN_CLASSIFIER.format(folder=folder)
    (folder / "hyperparams.yaml").write_text(text)
    hparams = load_hyperpyyaml(text)
    torch.save(hparams["embedding_model"].state_dict(), folder / "embedding_model.ckpt")
    torch.save(hparams["classifier"].state_dict(), folder / "classifier.ckpt")
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(names)
    encoder.save(str(folder / "label_encoder.txt"))
    return str(folder)


def test_a_speechbrain_encoder_classifier_folder_is_a_teacher(tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier

    from speechbrain_datar.dataio.audio import load_clip

    names = ["rain", "dog", "siren"]
    teacher = speechbrain_classifier_folder(tmp_path / "sb_teacher", names)
    save, ids = prepared_folder(tmp_path)
    scores = prepare_teacher_scores(Distillation(0.5, 2.0, teacher=teacher), save, encoders(sorted(names)))
    model = EncoderClassifier.from_hparams(source=teacher, savedir=str(tmp_path / "loaded"))
    entries = json.load(open(os.path.join(save, "train.json")))
    order = [names.index(name) for name in sorted(names)]
    for clip_id in ids:
        out_prob = model.classify_batch(load_clip(entries[clip_id]["path"], 16000).unsqueeze(0))[0]
        expected = out_prob.exp()[0, order]  # SpeechBrain's classifiers give log-probabilities
        assert torch.allclose(scores.batch([clip_id])["label"][0], expected, atol=1e-5)
        assert float(scores.batch([clip_id])["label"].sum()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(DataError, match="fp32 only"):
        prepare_teacher_scores(
            Distillation(0.5, 2.0, teacher=teacher, teacher_precision="int8"), save, encoders(sorted(names))
        )


def test_students_of_one_teacher_share_its_scores_through_the_cache(tmp_path, caplog):
    save, ids = prepared_folder(tmp_path)
    scores_file = tmp_path / "scores.json"
    write_scores(scores_file, ["a", "b"], {i: {"label": [0.25, 0.75]} for i in ids})
    cache = str(tmp_path / "cache")
    first = prepare_teacher_scores(
        Distillation(0.5, 2.0, teacher_scores=str(scores_file), teacher_cache=cache), save, encoders(["a", "b"])
    )
    assert os.listdir(cache) == [f"{first.fingerprint}.npz"]
    other = tmp_path / "other_student"
    other.mkdir()
    shutil.copy(os.path.join(save, "train.json"), other / "train.json")  # the same clips, another run's folder
    write_scores(scores_file, ["a", "b"], {i: {"label": [0.25, 0.75]} for i in ids})  # rewritten, the same bytes
    with caplog.at_level("INFO"):
        again = prepare_teacher_scores(
            Distillation(0.9, 4.0, teacher_scores=str(scores_file), teacher_cache=cache),
            str(other),
            encoders(["a", "b"]),
        )
    assert "reusing" in caplog.text and cache in caplog.text
    assert again.fingerprint == first.fingerprint and os.path.isfile(other / SCORES_FILE)
