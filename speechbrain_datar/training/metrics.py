"""Top-k accuracy, per-clip predictions and confusion matrices for classification recipes; mAP, AUC and
d-prime for multi-label tagging."""

import csv
import logging
import os
import re
import statistics

import numpy as np
import torch
from scipy.stats import rankdata

logger = logging.getLogger(__name__)


class ClassificationMetrics:
    """Accumulates predictions of one head over an epoch.

    Arguments
    ---------
    n_classes : int
        Number of classes.
    topk : tuple
        The k of the top-k accuracies to report.

    Example
    -------
    >>> metrics = ClassificationMetrics(3, topk=(1, 2))
    >>> log_probs = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    >>> metrics.append(["a", "b"], log_probs, torch.tensor([0, 1]))
    >>> metrics.summarize()
    {'top1': 0.5, 'top2': 1.0}
    >>> metrics.confusion_matrix().tolist()
    [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    """

    def __init__(self, n_classes, topk=(1, 5)):
        self.n_classes = n_classes
        self.topk = tuple(k for k in topk if k <= n_classes) or (1,)
        self.ids, self.targets, self.ranked = [], [], []

    def append(self, ids, log_probs, targets):
        """Adds a batch: ``log_probs`` ``[batch, C]`` (or ``[batch, 1, C]``), ``targets`` ``[batch]``."""
        log_probs = log_probs.detach().reshape(len(ids), -1).float().cpu()
        top = log_probs.topk(max(self.topk), dim=-1).indices
        self.ids.extend(ids)
        self.targets.append(targets.detach().reshape(-1).cpu())
        self.ranked.append(top)

    def _stacked(self):
        return torch.cat(self.targets), torch.cat(self.ranked)

    def correct(self, k=1):
        """Boolean per clip: target among the top ``k``."""
        targets, ranked = self._stacked()
        return (ranked[:, :k] == targets[:, None]).any(dim=1)

    def summarize(self):
        """Top-k accuracies as fractions: ``{"top1": a, "top5": b}``."""
        if not self.ids:
            return {f"top{k}": 0.0 for k in self.topk}
        return {f"top{k}": self.correct(k).float().mean().item() for k in self.topk}

    def statistics(self):
        """The summary as logged: percentages, two decimals."""
        return {name: round(100.0 * value, 2) for name, value in self.summarize().items()}

    def predictions(self):
        """Per clip: id, target index, predicted index."""
        targets, ranked = self._stacked()
        return list(zip(self.ids, targets.tolist(), ranked[:, 0].tolist()))

    def write_reports(self, folder, labels, suffix=""):
        """Writes ``test_predictions<suffix>.csv`` and ``confusion_matrix<suffix>.csv`` (and ``.png``)."""
        write_classification_reports(self, folder, labels, suffix)

    def confusion_matrix(self):
        """``[true, predicted]`` counts."""
        targets, ranked = self._stacked()
        matrix = torch.zeros(self.n_classes, self.n_classes, dtype=torch.long)
        matrix.index_put_((targets, ranked[:, 0]), torch.ones_like(targets), accumulate=True)
        return matrix


def average_precision(scores, targets):
    """Average precision of one class: the area under its precision-recall steps,
    ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds (tied scores share one).

    Example
    -------
    >>> average_precision(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
    0.8333333333333333
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    scores, targets = np.asarray(scores, dtype=np.float64)[order], np.asarray(targets, dtype=np.float64)[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    true_positives = np.cumsum(targets)[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores, targets):
    """Area under the ROC curve of one class: the probability that a positive clip scores above a negative
    one, ties counting half (Mann-Whitney U).

    Example
    -------
    >>> roc_auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
    0.75
    """
    targets = np.asarray(targets).astype(bool)
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    positives, negatives = targets.sum(), (~targets).sum()
    return float((ranks[targets].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def d_prime(auc):
    """d' of an AUC, as AudioSet papers report it: ``sqrt(2) * Phi^-1(AUC)``.

    Example
    -------
    >>> round(d_prime(0.5), 6), round(d_prime(0.9), 4)
    (0.0, 1.8124)
    """
    auc = min(max(auc, 1e-12), 1 - 1e-12)
    return float(np.sqrt(2.0) * statistics.NormalDist().inv_cdf(auc))


class TaggingMetrics:
    """Accumulates the class probabilities of a multi-label head over an epoch: mAP, AUC and d-prime.

    Macro averages over the classes the evaluation set can score: AP needs a positive clip of
    the class, AUC a positive and a negative one; the others are counted in ``unscored``.

    Arguments
    ---------
    n_classes : int
        Number of classes.

    Example
    -------
    >>> metrics = TaggingMetrics(2)
    >>> probs = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
    >>> metrics.append(["a", "b", "c"], probs.log(), torch.tensor([[1, 0], [0, 1], [1, 1]]))
    >>> {k: round(v, 4) for k, v in metrics.summarize().items()}
    {'mAP': 0.9167, 'AUC': 0.75, 'd_prime': 0.9539}
    """

    def __init__(self, n_classes):
        self.n_classes = n_classes
        self.ids, self.scores, self.targets = [], [], []

    def append(self, ids, log_probs, targets):
        """Adds a batch: per-class log-probabilities ``[batch, C]`` (or ``[batch, 1, C]``) and multi-hot
        targets ``[batch, C]``."""
        self.ids.extend(ids)
        self.scores.append(log_probs.detach().reshape(len(ids), -1).float().exp().cpu())
        self.targets.append(targets.detach().reshape(len(ids), -1).cpu())

    def per_class(self):
        """``{"AP": list, "AUC": list}``, one value per class, ``nan`` where the set cannot score it."""
        scores, targets = torch.cat(self.scores).numpy(), torch.cat(self.targets).numpy() > 0.5
        ap, auc = np.full(self.n_classes, np.nan), np.full(self.n_classes, np.nan)
        for c in range(self.n_classes):
            positives = targets[:, c].sum()
            if positives:
                ap[c] = average_precision(scores[:, c], targets[:, c])
                if positives < len(targets):
                    auc[c] = roc_auc(scores[:, c], targets[:, c])
        return {"AP": ap, "AUC": auc}

    @property
    def unscored(self):
        """Classes without a positive clip in the evaluation set (no AP)."""
        return int(np.isnan(self.per_class()["AP"]).sum()) if self.ids else self.n_classes

    def summarize(self):
        """Macro averages ``{"mAP": m, "AUC": a, "d_prime": d}`` (fractions; d' as it is)."""
        if not self.ids:
            return {"mAP": 0.0, "AUC": 0.0, "d_prime": 0.0}
        per_class = self.per_class()
        ap, auc = np.nanmean(per_class["AP"]), np.nanmean(per_class["AUC"])
        return {"mAP": float(ap), "AUC": float(auc), "d_prime": d_prime(float(auc))}

    def statistics(self):
        """The summary as logged: mAP and AUC in percent, d-prime as it is, two decimals (three for d')."""
        summary = self.summarize()
        return {
            "mAP": round(100.0 * summary["mAP"], 2),
            "AUC": round(100.0 * summary["AUC"], 2),
            "d_prime": round(summary["d_prime"], 3),
        }

    def write_reports(self, folder, labels, suffix=""):
        """Writes ``test_per_class<suffix>.csv``: each class's AP, AUC and positives."""
        write_per_class_report(os.path.join(folder, f"test_per_class{suffix}.csv"), self, labels)

    def label_frequency_baseline(self):
        """The mAP of scoring every clip with each class's frequency in the evaluation set (a constant score
        per class: each class's AP is its positive fraction)."""
        targets = torch.cat(self.targets).numpy() > 0.5
        fractions = targets.mean(axis=0)
        return float(np.mean(fractions[fractions > 0])) if self.ids else 0.0


def write_predictions(path, rows, decode):
    """Writes ``id, target, prediction`` rows (decoded to label names) as CSV."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "target", "prediction"])
        for clip_id, target, predicted in rows:
            writer.writerow([clip_id, decode(target), decode(predicted)])


def write_confusion_matrix(path, matrix, labels):
    """Writes the confusion matrix as CSV with label names."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted"] + list(labels))
        for label, row in zip(labels, matrix.tolist()):
            writer.writerow([label] + row)


def write_per_class_report(path, metrics, labels):
    """Writes each class's AP, AUC and positive clips in the test set (CSV), best AP first."""
    per_class = metrics.per_class()
    positives = (torch.cat(metrics.targets) > 0.5).sum(dim=0).tolist()
    rows = sorted(zip(labels, per_class["AP"], per_class["AUC"], positives), key=lambda r: -np.nan_to_num(r[1], nan=-1))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "AP", "AUC", "positives"])
        for label, ap, auc, n in rows:
            writer.writerow([label, "" if np.isnan(ap) else f"{ap:.4f}", "" if np.isnan(auc) else f"{auc:.4f}", n])


def write_classification_reports(metrics, folder, labels, suffix=""):
    """Per-clip predictions and the confusion matrix (CSV, and PNG when matplotlib is installed)."""
    write_predictions(
        os.path.join(folder, f"test_predictions{suffix}.csv"), metrics.predictions(), lambda index: labels[index]
    )
    matrix = metrics.confusion_matrix()
    write_confusion_matrix(os.path.join(folder, f"confusion_matrix{suffix}.csv"), matrix, labels)
    try:
        from speechbrain_datar.plots import plot_confusion_matrix
    except ImportError:  # matplotlib is an optional extra
        logger.info("matplotlib not installed: confusion matrix written as CSV only")
        return
    plot_confusion_matrix(matrix, labels, os.path.join(folder, f"confusion_matrix{suffix}.png"))


def write_test_reports(folder, metrics, label_encoders):
    """Writes each head's test reports (its metrics object knows which: predictions and confusion matrix for
    a single-label head, per-class AP and AUC for a tagger).

    ``metrics`` and ``label_encoders`` map the label keys to metrics objects and
    ``CategoricalEncoder``; with several heads, file names end in ``_<key>``.
    """
    for key, head_metrics in metrics.items():
        encoder = label_encoders[key]
        labels = [encoder.ind2lab[i] for i in range(len(encoder))]
        head_metrics.write_reports(folder, labels, "" if len(metrics) == 1 else f"_{key}")


def drop_unsaved_epochs(log_path, last_saved_epoch):
    """Removes the log entries of epochs after ``last_saved_epoch``: a run killed between logging an
    epoch and checkpointing it trains that epoch again when it resumes, and logs it again.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("epoch: 1, lr: 1 - loss: 2\\nepoch: 2, lr: 1 - loss: 1\\n")
    >>> drop_unsaved_epochs(path, 1)
    1
    >>> open(path).read()
    'epoch: 1, lr: 1 - loss: 2\\n'
    """
    if not os.path.isfile(log_path):
        return 0
    with open(log_path) as f:
        lines = f.readlines()
    kept = [line for line in lines if not _logged_after(line, last_saved_epoch)]
    if len(kept) != len(lines):
        with open(log_path, "w") as f:
            f.writelines(kept)
    return len(lines) - len(kept)


def _logged_after(line, epoch):
    found = re.match(r"epoch: (\d+),", line)
    return found is not None and int(found.group(1)) > epoch
