"""The skip report: what data preparation left out, and why."""

import collections
import json
import logging

logger = logging.getLogger(__name__)


class SkipReport:
    """Counts skipped items by reason and keeps a few examples of each.

    Example
    -------
    >>> report = SkipReport("train")
    >>> report.add("missing", "a.wav"); report.add("missing", "b.wav"); report.kept(10)
    >>> report.counts
    {'missing': 2}
    >>> print(report.summary())
    train: kept 10, skipped 2 (missing: 2)
    """

    def __init__(self, name, examples_per_reason=20):
        self.name = name
        self.examples_per_reason = examples_per_reason
        self._counts = collections.Counter()
        self._examples = collections.defaultdict(list)
        self.n_kept = 0

    def add(self, reason, detail):
        """Records one skipped item."""
        self._counts[reason] += 1
        if len(self._examples[reason]) < self.examples_per_reason:
            self._examples[reason].append(str(detail))

    def kept(self, n=1):
        """Records ``n`` kept items."""
        self.n_kept += n

    @property
    def counts(self):
        """Skipped items per reason."""
        return dict(self._counts)

    @property
    def n_skipped(self):
        """All skipped items."""
        return sum(self._counts.values())

    def summary(self):
        """One line: kept, skipped, and the reasons."""
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self._counts.items()))
        line = f"{self.name}: kept {self.n_kept}, skipped {self.n_skipped}"
        return line + (f" ({reasons})" if reasons else "")

    def to_dict(self):
        """A JSON-friendly view with examples."""
        return {
            "kept": self.n_kept,
            "skipped": self.n_skipped,
            "reasons": self.counts,
            "examples": {k: list(v) for k, v in self._examples.items()},
        }


def write_reports(reports, path, extra=None):
    """Writes several reports (and ``extra`` top-level entries) to one JSON file and logs their summaries."""
    content = {r.name: r.to_dict() for r in reports}
    content.update(extra or {})
    with open(path, "w") as f:
        json.dump(content, f, indent=2)
    for report in reports:
        logger.info(report.summary())
    for key, value in (extra or {}).items():
        logger.info("%s: %s", key, value)
