"""Knowledge distillation: a recipe's model learns from a teacher's per-clip class probabilities.

The teacher is a trained model (an export of this package, or a SpeechBrain ``EncoderClassifier`` folder:
its ``hyperparams.yaml`` and checkpoints) or a file of per-clip scores made elsewhere. Its probabilities for
every training clip are computed **once**, before training, the way the exported teacher classifies a clip
(its sliding windows, averaged), and kept in ``<save_folder>/teacher_scores.npz`` with a fingerprint of the
teacher, its precision and the training manifest: a rerun (a resumed run too) reads them back, a changed
teacher or manifest computes them again. Training adds the term per head (``head.distillation_loss``)::

    loss = (1 - distill_weight) * task loss + distill_weight * distillation term

The term is the temperature-scaled KL divergence (times ``T**2``) for single-label heads and the binary
cross-entropy against the teacher's probabilities for multi-label heads; under mixup the teacher's targets
are mixed like the labels. ``distill_weight: 0`` (or no teacher) trains exactly as without distillation.

A scores file (``--teacher_scores``) is JSON, class names per head and probabilities per clip id, in the
order of those names (a one-head recipe's head is ``label``, a tagger's ``labels``, EPIC's ``verb`` and
``noun``)::

    {"classes": {"label": ["dog", "rain", "rooster"]},
     "probabilities": {"1-100032-A-0": {"label": [0.91, 0.02, 0.07]}, ...}}
"""

import hashlib
import json
import logging
import math
import os
import tempfile

import numpy as np
import torch
from speechbrain.inference.classifiers import EncoderClassifier
from tqdm import tqdm

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.labels import class_names
from speechbrain_datar.dataio.manifest import read_manifest
from speechbrain_datar.errors import DataError, MissingDataError
from speechbrain_datar.inference.interfaces import MultiHeadAudioClassifier

logger = logging.getLogger(__name__)

SCORES_FILE = "teacher_scores.npz"
TEACHER_PRECISIONS = ("fp32", "bf16", "int8")
#: Files of a teacher folder that make its fingerprint (weights, graph, classes).
TEACHER_FILE_ENDINGS = (".yaml", ".ckpt", ".txt", ".json")


class Distillation:
    """The distillation settings of a recipe (the YAML's ``distillation`` object), checked when it is made.

    Arguments
    ---------
    weight : float
        ``distill_weight`` in [0, 1]: the distillation term's share of the loss.
    temperature : float
        ``distill_temperature`` (> 0) of single-label heads.
    teacher : str or None
        A teacher model's folder.
    teacher_scores : str or None
        A scores file (the module's docstring has its format), instead of ``teacher``.
    teacher_precision : str
        What the teacher runs in while it scores the clips (``fp32``, ``bf16``, ``int8``; exports of this
        package only).
    teacher_cache : str or None
        A folder where scores are also kept by fingerprint (``<fingerprint>.npz``), so that several students of
        one teacher on the same training clips (a search, other models) score them once between them.

    Example
    -------
    >>> Distillation(0.5, 2.0).active, Distillation(0.0, 2.0, teacher_scores="scores.json").active
    (False, False)
    >>> Distillation(0.5, 2.0, teacher_scores="scores.json").active
    True
    >>> Distillation(1.5, 2.0)
    Traceback (most recent call last):
    ...
    speechbrain_datar.errors.DataError: distill_weight must be in [0, 1], got 1.5
    """

    def __init__(
        self,
        weight=0.0,
        temperature=1.0,
        teacher=None,
        teacher_scores=None,
        teacher_precision="fp32",
        teacher_cache=None,
    ):
        self.weight, self.temperature = _number("distill_weight", weight), _number("distill_temperature", temperature)
        if not 0.0 <= self.weight <= 1.0:
            raise DataError(f"distill_weight must be in [0, 1], got {weight}")
        if not 0.0 < self.temperature < math.inf:
            raise DataError(f"distill_temperature must be a positive number, got {temperature}")
        if teacher and teacher_scores:
            raise DataError("give either --teacher (a model folder) or --teacher_scores (a scores file), not both")
        if teacher_precision not in TEACHER_PRECISIONS:
            raise DataError(f"teacher_precision must be one of {TEACHER_PRECISIONS}, got {teacher_precision!r}")
        self.teacher, self.teacher_scores = teacher or None, teacher_scores or None
        self.teacher_precision = teacher_precision
        self.teacher_cache = teacher_cache or None
        for name, path in (("teacher", self.teacher), ("teacher_scores", self.teacher_scores)):
            if path is not None and not isinstance(path, str):
                raise DataError(f"{name} must be a path, got {path!r}")

    @property
    def active(self):
        """Whether training adds the term: a teacher (or scores file) and a weight above 0."""
        return self.weight > 0 and (self.teacher is not None or self.teacher_scores is not None)

    def check_sources(self):
        """One line if the teacher's folder or the scores file is missing."""
        if self.teacher is not None and not os.path.isfile(os.path.join(self.teacher, "hyperparams.yaml")):
            raise MissingDataError(f"teacher {self.teacher}: no hyperparams.yaml there (not a trained model's folder)")
        if self.teacher_scores is not None and not os.path.isfile(self.teacher_scores):
            raise MissingDataError(f"teacher_scores {self.teacher_scores}: no such file")

    def combine(self, task_loss, head, predictions, teacher, mix=None):
        """The task loss with the distillation term, ``(1 - w) * task_loss + w * term``, the term being the head's
        ``distillation_loss`` against ``teacher``; the task loss itself when inactive."""
        if not self.active or teacher is None:
            return task_loss
        term = head.distillation_loss(predictions, teacher, self.temperature, mix)
        return (1 - self.weight) * task_loss + self.weight * term


def _number(name, value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number, got {value!r}") from None


class TeacherScores:
    """The teacher's probabilities of the training clips, per head, in the recipe's class order.

    Arguments
    ---------
    ids : list of str
        Clip ids.
    probabilities : dict
        ``{head: float32 array [n_clips, n_classes]}``; a row of NaN: no score for that clip.
    fingerprint : str
        What the scores were computed from (teacher, precision, manifest).

    Example
    -------
    >>> scores = TeacherScores(["a", "b"], {"label": np.array([[0.9, 0.1], [0.2, 0.8]], dtype="float32")}, "x")
    >>> path = os.path.join(tempfile.mkdtemp(), SCORES_FILE)
    >>> scores.save(path)
    >>> loaded = TeacherScores.load(path)
    >>> loaded.fingerprint, loaded.batch(["b", "z"])["label"].tolist()[0]
    ('x', [0.20000000298023224, 0.800000011920929])
    """

    def __init__(self, ids, probabilities, fingerprint=""):
        self.ids = [str(i) for i in ids]
        # one row of NaN after the clips' rows, made once: a batch's rows are then one gather, unknown ids the NaN row
        self._rows_and_nan = {
            head: np.concatenate(
                [np.asarray(array, dtype=np.float32), np.full((1, np.shape(array)[1]), np.nan, np.float32)]
            )
            for head, array in probabilities.items()
        }
        self.probabilities = {head: padded[:-1] for head, padded in self._rows_and_nan.items()}
        self.fingerprint = str(fingerprint)
        self.row_of = {clip_id: row for row, clip_id in enumerate(self.ids)}

    def save(self, path):
        """Writes the scores (numpy's ``.npz``, no pickled objects), replacing ``path`` only when complete."""
        arrays = {f"probabilities_{i}": array for i, array in enumerate(self.probabilities.values())}
        meta = json.dumps({"fingerprint": self.fingerprint, "heads": list(self.probabilities)})
        folder = os.path.dirname(os.path.abspath(path))
        handle, partial = tempfile.mkstemp(dir=folder, prefix=".teacher_scores", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as f:
                np.savez(f, ids=np.array(self.ids, dtype=str), meta=np.array(meta), **arrays)
            os.replace(partial, path)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise

    @classmethod
    def load(cls, path):
        """Reads scores written by ``save`` (``DataError`` if the file is not such scores)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                heads = meta["heads"]
                probabilities = {head: data[f"probabilities_{i}"] for i, head in enumerate(heads)}
                ids = data["ids"].tolist()
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path} is not a teacher scores file ({error})") from None
        if any(array.shape[0] != len(ids) for array in probabilities.values()):
            raise DataError(f"{path}: its probabilities and clip ids differ in number")
        return cls(ids, probabilities, meta.get("fingerprint", ""))

    def batch(self, ids, device="cpu"):
        """``{head: [batch, n_classes]}`` of the clips ``ids`` (rows of NaN for clips without scores)."""
        rows = [self.row_of.get(str(clip_id), -1) for clip_id in ids]
        return {head: torch.from_numpy(padded[rows]).to(device) for head, padded in self._rows_and_nan.items()}


def fill_missing(teacher, predictions):
    """Rows of ``teacher`` without scores (NaN) take the student's own detached probabilities, whose distillation
    term has no gradient: a clip the teacher could not score is trained on its labels alone.

    Example
    -------
    >>> teacher = {"label": torch.tensor([[0.5, 0.5], [float("nan")] * 2])}
    >>> student = {"label": torch.log(torch.tensor([[[0.9, 0.1]], [[0.3, 0.7]]]))}
    >>> fill_missing(teacher, student)["label"]
    tensor([[0.5000, 0.5000],
            [0.3000, 0.7000]])
    """
    filled = {}
    for head, probs in teacher.items():
        missing = torch.isnan(probs).any(dim=-1)
        if missing.any():
            own = predictions[head].detach().float().mean(dim=1).exp()
            probs = torch.where(missing.unsqueeze(-1), own.to(probs.device), probs)
        filled[head] = probs
    return filled


# -------------------------------------------------------------------------------------------- the teacher
def file_digest(path, digest):
    """Adds a file's content to ``digest``."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def teacher_fingerprint(distillation, manifest_path, classes):
    """SHA-256 of what the scores depend on: the teacher's files (or the scores file), its precision, the
    training manifest and the recipe's classes."""
    digest = hashlib.sha256()
    if distillation.teacher is not None:
        for name in sorted(os.listdir(distillation.teacher)):
            path = os.path.join(distillation.teacher, name)
            if name.endswith(TEACHER_FILE_ENDINGS) and os.path.isfile(path):
                digest.update(name.encode() + b"\0")
                file_digest(path, digest)
        digest.update(distillation.teacher_precision.encode())
    else:
        file_digest(distillation.teacher_scores, digest)
    file_digest(manifest_path, digest)
    digest.update(json.dumps(classes, sort_keys=True).encode())
    return digest.hexdigest()


class Teacher:
    """A trained model that scores clips: ``classes`` ``{head: [names]}``, ``sample_rate`` and ``probabilities``.

    Exports of this package are read with ``MultiHeadAudioClassifier`` (every head, multi-label ones
    included, in the given precision); other folders with SpeechBrain's ``EncoderClassifier`` (one head).
    """

    def __init__(self, folder, precision="fp32", savedir=None):
        savedir = savedir or tempfile.mkdtemp(prefix="teacher")
        with open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8") as f:
            ours = any(line.startswith("label_keys:") for line in f)
        if ours:
            self.model = MultiHeadAudioClassifier.from_hparams(source=folder, savedir=savedir, precision=precision)
            self.classes = class_names(self.model.hparams)
        else:
            if precision != "fp32":
                raise DataError(f"teacher {folder}: a SpeechBrain EncoderClassifier teacher runs in fp32 only")
            self.model = EncoderClassifier.from_hparams(source=folder, savedir=savedir)
            encoder = self.model.hparams.label_encoder
            self.classes = {"label": [encoder.ind2lab[i] for i in range(len(encoder))]}
        self.ours = ours
        self.sample_rate = int(self.model.audio_normalizer.sample_rate)

    def probabilities(self, wav):
        """``{head: probabilities [n_classes]}`` of one clip's waveform at ``sample_rate``."""
        with torch.no_grad():
            if self.ours:
                scores = self.model.batch_scores(wav.unsqueeze(0))
                return {head: log_probs.reshape(-1).exp().cpu() for head, log_probs in scores.items()}
            out = self.model.classify_batch(wav.unsqueeze(0))[0].reshape(-1).float().cpu()
        return {"label": as_probabilities(out)}


def as_probabilities(scores):
    """A one-head ``EncoderClassifier``'s ``out_prob`` as probabilities: kept if it already is a distribution,
    exponentiated if it is log-probabilities, else taken as logits (softmax).

    Example
    -------
    >>> as_probabilities(torch.log(torch.tensor([0.25, 0.75]))).tolist()
    [0.25, 0.75]
    >>> as_probabilities(torch.tensor([0.0, 0.0])).tolist()
    [0.5, 0.5]
    """
    if scores.min() >= 0 and abs(float(scores.sum()) - 1.0) < 1e-3:
        return scores
    if scores.max() <= 0 and abs(float(torch.logsumexp(scores, 0))) < 1e-3:
        return scores.exp()
    return torch.softmax(scores, dim=0)


def aligned_columns(teacher_classes, recipe_classes, source):
    """``{recipe head: (teacher head, column indices)}``: each recipe class's column in the teacher's scores,
    matched by name. A teacher with other classes (or heads) is a ``DataError`` naming the difference.

    Example
    -------
    >>> aligned_columns({"label": ["rain", "dog"]}, {"label": ["dog", "rain"]}, "t")
    {'label': ('label', [1, 0])}
    >>> aligned_columns({"label": ["rain", "cat"]}, {"label": ["dog", "rain"]}, "t")
    Traceback (most recent call last):
    ...
    speechbrain_datar.errors.DataError: teacher t has other classes than the data (head label): the data's ['dog'] are not among the teacher's, the teacher's ['cat'] are not among the data's
    """
    if len(teacher_classes) == 1 and len(recipe_classes) == 1:
        heads = {next(iter(recipe_classes)): next(iter(teacher_classes))}
    else:
        if set(teacher_classes) != set(recipe_classes):
            raise DataError(
                f"teacher {source} has the heads {sorted(teacher_classes)}, the data {sorted(recipe_classes)}"
            )
        heads = {head: head for head in recipe_classes}
    columns = {}
    for head, teacher_head in heads.items():
        names, theirs = [str(c) for c in recipe_classes[head]], [str(c) for c in teacher_classes[teacher_head]]
        lacking, extra = sorted(set(names) - set(theirs)), sorted(set(theirs) - set(names))
        if lacking or extra:
            raise DataError(
                f"teacher {source} has other classes than the data (head {head}): "
                + ", ".join(
                    part
                    for part in (
                        f"the data's {lacking} are not among the teacher's" if lacking else "",
                        f"the teacher's {extra} are not among the data's" if extra else "",
                    )
                    if part
                )
            )
        columns[head] = (teacher_head, [theirs.index(name) for name in names])
    return columns


def score_clips(teacher, entries, columns):
    """The teacher's probabilities of every manifest entry, in the recipe's class order (NaN rows for clips that
    fail to load, each named in the log)."""
    probabilities = {
        head: np.full((len(entries), len(cols)), np.nan, np.float32) for head, (_, cols) in columns.items()
    }
    for row, (clip_id, entry) in enumerate(tqdm(entries.items(), desc="teacher scores", dynamic_ncols=True)):
        try:
            wav = load_clip(entry["path"], teacher.sample_rate, entry.get("start"), entry.get("stop"))
        except (OSError, ValueError, RuntimeError) as error:
            logger.warning("teacher scores: %s left out (%s)", clip_id, error)
            continue
        scores = teacher.probabilities(wav)
        for head, (teacher_head, cols) in columns.items():
            probabilities[head][row] = scores[teacher_head].numpy()[cols]
    return probabilities


def read_scores_file(path, entries, recipe_classes):
    """The probabilities of a scores file (the module's format) for ``entries``, in the recipe's class order."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        classes, clips = data["classes"], data["probabilities"]
        if not isinstance(classes, dict) or not isinstance(clips, dict):
            raise TypeError("classes and probabilities must be objects")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise DataError(
            f"teacher_scores {path}: not a scores file ({error}); see speechbrain_datar.training.distillation"
        ) from None
    columns = aligned_columns(classes, recipe_classes, path)
    probabilities = {
        head: np.full((len(entries), len(cols)), np.nan, np.float32) for head, (_, cols) in columns.items()
    }
    found = 0
    for row, clip_id in enumerate(entries):
        clip = clips.get(clip_id)
        if clip is None:
            continue
        for head, (teacher_head, cols) in columns.items():
            values = np.asarray(clip.get(teacher_head) if isinstance(clip, dict) else None, dtype=np.float64)
            if values.shape != (len(classes[teacher_head]),) or not np.all(np.isfinite(values)):
                raise DataError(
                    f"teacher_scores {path}: clip {clip_id!r} has no {len(classes[teacher_head])} finite "
                    f"probabilities for {teacher_head}"
                )
            probabilities[head][row] = np.clip(values, 0.0, 1.0)[cols]
        found += 1
    if not found:
        raise DataError(f"teacher_scores {path}: none of the {len(entries)} training clips has scores there")
    if found < len(entries):
        logger.warning(
            "teacher_scores %s: %d of %d training clips have no scores (trained on labels alone)",
            path,
            len(entries) - found,
            len(entries),
        )
    return probabilities


def prepare_teacher_scores(distillation, save_folder, label_encoders):
    """Computes (or reads back) the teacher's scores of the training clips into ``save_folder``; returns them
    (``None`` when distillation is off). A scores file whose fingerprint matches is reused as it is."""
    if not distillation.active:
        return None
    distillation.check_sources()
    manifest_path = os.path.join(save_folder, "train.json")
    recipe_classes = {key: [encoder.ind2lab[i] for i in range(len(encoder))] for key, encoder in label_encoders.items()}
    fingerprint = teacher_fingerprint(distillation, manifest_path, recipe_classes)
    path = os.path.join(save_folder, SCORES_FILE)
    cached = os.path.join(distillation.teacher_cache, f"{fingerprint}.npz") if distillation.teacher_cache else None
    for candidate in (path, cached):
        if candidate is None or not os.path.isfile(candidate):
            continue
        try:
            existing = TeacherScores.load(candidate)
        except DataError as error:
            logger.warning("%s; computing the teacher's scores again", error)
            continue
        if existing.fingerprint == fingerprint:
            logger.info("teacher scores: reusing %s", candidate)
            if candidate != path:
                existing.save(path)
            return existing
    entries = read_manifest(manifest_path)
    if distillation.teacher is not None:
        teacher = Teacher(distillation.teacher, distillation.teacher_precision, os.path.join(save_folder, "teacher"))
        columns = aligned_columns(teacher.classes, recipe_classes, distillation.teacher)
        logger.info("teacher scores: %d training clips through %s", len(entries), distillation.teacher)
        probabilities = score_clips(teacher, entries, columns)
    else:
        probabilities = read_scores_file(distillation.teacher_scores, entries, recipe_classes)
    scores = TeacherScores(list(entries), probabilities, fingerprint)
    scores.save(path)
    if cached is not None:
        os.makedirs(distillation.teacher_cache, exist_ok=True)
        scores.save(cached)
    logger.info("teacher scores: wrote %s", path)
    return scores
