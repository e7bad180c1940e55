"""Top-k accuracy, per-clip predictions and confusion matrices for classification recipes."""

import csv
import logging
import os
import re

import torch

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
        """``{"top1": ..., "top5": ...}`` as fractions."""
        if not self.ids:
            return {f"top{k}": 0.0 for k in self.topk}
        return {f"top{k}": self.correct(k).float().mean().item() for k in self.topk}

    def predictions(self):
        """Per clip: id, target index, predicted index."""
        targets, ranked = self._stacked()
        return list(zip(self.ids, targets.tolist(), ranked[:, 0].tolist()))

    def confusion_matrix(self):
        """``[true, predicted]`` counts."""
        targets, ranked = self._stacked()
        matrix = torch.zeros(self.n_classes, self.n_classes, dtype=torch.long)
        matrix.index_put_((targets, ranked[:, 0]), torch.ones_like(targets), accumulate=True)
        return matrix


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


def write_test_reports(folder, metrics, label_encoders):
    """Per-clip predictions and confusion matrices (CSV, and PNG when matplotlib is installed) of each head.

    ``metrics`` and ``label_encoders`` map the label keys to ``ClassificationMetrics``
    and ``CategoricalEncoder``; with several heads, file names end in ``_<key>``.
    """
    for key, head_metrics in metrics.items():
        encoder = label_encoders[key]
        suffix = "" if len(metrics) == 1 else f"_{key}"
        labels = [encoder.ind2lab[i] for i in range(len(encoder))]
        write_predictions(
            os.path.join(folder, f"test_predictions{suffix}.csv"), head_metrics.predictions(),
            lambda index: encoder.ind2lab[index],
        )
        matrix = head_metrics.confusion_matrix()
        write_confusion_matrix(os.path.join(folder, f"confusion_matrix{suffix}.csv"), matrix, labels)
        try:
            from speechbrain_datar.visualize import plot_confusion_matrix
        except ImportError:  # matplotlib is an optional extra
            logger.info("matplotlib not installed: confusion matrix written as CSV only")
            continue
        plot_confusion_matrix(matrix, labels, os.path.join(folder, f"confusion_matrix{suffix}.png"))


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
