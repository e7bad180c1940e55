"""Training from shards: ``ShardStream`` deals the shards to processes and loader workers and shuffles clips in a buffer; damage costs the clip, reported.

Part of ``speechbrain_datar.dataio.shards`` (the package documents the format).
"""

import bisect
import json
import logging
import os
import random
import tarfile

import speechbrain as sb
import torch

from speechbrain_datar.dataio.frames import DEFAULT_FPS, FrameTransform, frame_times
from speechbrain_datar.dataio.pipelines import encode_label
from speechbrain_datar.dataio.shard_records import (
    MAX_REPORTED,
    DamagedRecord,
    RecordLimits,
    read_records,
)
from speechbrain_datar.dataio.shards.format import member_cap, shard_problem
from speechbrain_datar.dataio.shards.planning import (
    _rank_and_world_size,
    draws_in_epoch,
    plan_epoch,
    round_robin_counts,
)
from speechbrain_datar.dataio.shards.writing import _decode_images
from speechbrain_datar.errors import DataError

logger = logging.getLogger(__name__)


class DamageReport:
    """Damage found while reading shards: each damaged clip or shard is logged (by name, the first ``MAX_REPORTED``
    of a shard; the rest counted in one line) and, with ``path``, appended to it as a JSON line ``{"shard",
    "reason", "message", "epoch"}`` (every loader worker appends its own lines).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "damage.jsonl")
    >>> report = DamageReport(path)
    >>> report.add("train-000000.tar", "non_finite", "record 000000001 (a): audio is not finite")
    >>> [line["reason"] for line in DamageReport.read(path)]
    ['non_finite']
    """

    def __init__(self, path=None):
        self.path, self.counts, self.epoch = path, {}, None

    def add(self, shard, reason, message):
        """One damaged clip (or the rest of a shard) of ``shard``."""
        count = self.counts[shard] = self.counts.get(shard, 0) + 1
        if count <= MAX_REPORTED:
            logger.warning("shard %s: %s; left out", shard, message)
        elif count == MAX_REPORTED + 1:
            logger.warning("shard %s: more damaged clips; the rest are counted in the report only", shard)
        if self.path:
            line = {"shard": shard, "reason": reason, "message": message[:500], "epoch": self.epoch}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    def read_shard(self, path, limits, record):
        """The whole clips of a shard, damage reported (a broken tar structure: the rest of the shard)."""
        try:
            for clip in read_records(path, limits, max_members=member_cap(record, limits)):
                if isinstance(clip, DamagedRecord):
                    self.add(path, clip.reason, str(clip))
                else:
                    yield clip
        except (tarfile.TarError, OSError) as error:
            self.add(path, "broken_shard", f"the rest of the shard is unreadable ({error})")

    @staticmethod
    def read(path):
        """The lines a report file holds."""
        if not path or not os.path.isfile(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def nearest(times, t):
    """Index of the time in the sorted ``times`` nearest to ``t`` (the earlier one of two as near).

    Example
    -------
    >>> nearest([0.125, 0.375, 0.625], 0.5), nearest([0.125, 0.375, 0.625], 0.9)
    (1, 2)
    """
    i = bisect.bisect_left(times, t)
    if i == 0:
        return 0
    if i == len(times) or t - times[i - 1] <= times[i] - t:
        return i - 1
    return i


def training_example(clip, sample_rate, crop_seconds, label_encoders, frames=None, transform=None):
    """One training example from a stored clip (``shard_records.StoredClip``), as the file pipelines make it: a
    random crop of ``crop_seconds`` (the whole clip if it is not longer), its frames from the stored grid with
    the training transform, and the encoded labels."""
    meta, members, wav = clip.meta, clip.members, clip.audio
    duration = meta["duration"]
    first, last = 0.0, duration
    if crop_seconds is not None and duration > crop_seconds:
        first = float(torch.empty(()).uniform_(0.0, duration - crop_seconds))
        last = first + crop_seconds
        lo = int(round(first * sample_rate))
        hi = lo + int(round(crop_seconds * sample_rate))
        wav = torch.nn.functional.pad(wav[lo:hi], (0, max(0, hi - lo - wav[lo:hi].shape[0])))
    example = {"id": meta["id"], "sig": wav}
    for key, encoder in label_encoders.items():
        example[f"{key}_encoded"] = encode_label(meta[key], encoder)
    if frames:
        fps = meta.get("fps") or DEFAULT_FPS
        times = frame_times(first, last, frames["n_frames"], frames["sampling"], fps, frames["stride"], True)
        stored = sorted(name for name in members if name.startswith("frame."))
        picks = [nearest(meta["frame_times"], t) for t in times]
        unique = sorted(set(picks))
        decoded = _decode_images([members[stored[k]] for k in unique])
        order = [unique.index(k) for k in picks]
        example["frames"] = transform(decoded if order == list(range(len(unique))) else decoded[order])
    return example


class ShardStream(torch.utils.data.IterableDataset):
    """Training batches streamed from tar shards: each clip once per epoch over all processes and workers.

    Every epoch (``set_epoch``, which SpeechBrain's ``Brain`` calls on its ``train_sampler``), the shards are
    dealt to the training processes and to their loader workers (``plan_epoch``); a worker reads its shards
    in turn, shuffles clips in a buffer and yields ``PaddedBatch`` es of the sizes the plan gives it, so that
    every process makes the same number of steps. A shard that is missing or truncated is reported by name
    and left out of the epoch; a damaged clip (its bytes are not those written) is reported and skipped, and
    a shard whose tar structure breaks is reported and the rest of it skipped; a worker that lost clips to
    damage repeats a batch (with a warning) rather than make fewer steps than the other processes wait for.
    Use it in a ``DataLoader`` with ``batch_size=None``.

    With ``expected_draws`` (class-balanced sampling, AudioSet's), a clip is used a number of times per
    epoch drawn around its expected count (``draws_in_epoch``) instead of once: the classes are balanced as
    by a weighted sampler with replacement, while the shards are still read in sequence.

    Arguments
    ---------
    shards : list
        The training split's shard records (``open_shard_folder``).
    label_encoders : dict
        Label key -> ``CategoricalEncoder``.
    settings : dict
        The shards' settings.
    crop_seconds : float
        Training crop.
    batch_size : int
        Largest batch.
    num_workers : int
        The loader's workers (0: the main process).
    shuffle_buffer : int
        Clips a worker shuffles among.
    seed : int
        Seed of the shards' order and of the buffer.
    rank, world_size : int or None
        This process's place among the training processes (default: ``torch.distributed``'s, else the
        ``RANK`` and ``WORLD_SIZE`` environment variables, else one process).
    expected_draws : dict or None
        Clip id -> how many times per epoch it is used on average (``None``: once each).
    entries : dict or None
        The training manifest's entries: a record of another clip, or whose metadata differs from its entry,
        is damage (``None``: any clip the shards hold).
    damage_report : str or None
        A file the damaged clips are appended to (``DamageReport``), besides the log.
    """

    def __init__(
        self,
        shards,
        label_encoders,
        settings,
        crop_seconds,
        batch_size,
        num_workers=0,
        shuffle_buffer=1000,
        seed=1234,
        rank=None,
        world_size=None,
        expected_draws=None,
        entries=None,
        damage_report=None,
    ):
        super().__init__()
        self.expected_draws = expected_draws
        self.limits = RecordLimits(settings["sample_rate"], entries, settings.get("frames"))
        self.damage = DamageReport(damage_report)
        self.label_encoders, self.settings = label_encoders, settings
        self.crop_seconds, self.batch_size, self.seed = crop_seconds, int(batch_size), int(seed)
        self.num_workers, self.shuffle_buffer = max(1, int(num_workers)), int(shuffle_buffer)
        self.rank, self.world_size = _rank_and_world_size() if rank is None else (int(rank), int(world_size))
        self.shards = []
        for record in shards:
            problem = shard_problem(record)
            if problem:
                logger.warning("shard %s is left out: %s", record["path"], problem)
            elif record["clips"]:
                self.shards.append(record)
        if not self.shards:
            raise DataError("no training shard can be read: see the warnings above, or write the shards again")
        self.epoch, self.skip = 0, 0
        #: A callable giving the steps already made in the current epoch (the Brain's ``step`` after it
        #: recovered an intra-epoch checkpoint); ``None``: epochs always start from their first batch.
        self.steps_done = None
        self.plan = plan_epoch(
            self._clips_per_shard(), self.world_size, self.num_workers, self.batch_size, 0, self.seed
        )

    def _draws(self, clip_id):
        """How many times the clip is used in this epoch (the same in every process)."""
        if self.expected_draws is None:
            return 1
        return draws_in_epoch(self.expected_draws.get(clip_id, 0.0), self.seed, self.epoch, clip_id)

    def _clips_per_shard(self):
        if self.expected_draws is None:
            return [record["clips"] for record in self.shards]
        return [sum(self._draws(clip_id) for clip_id in record["ids"]) for record in self.shards]

    def set_epoch(self, epoch):
        """Deals the shards for ``epoch`` (the same plan in every process). When ``steps_done`` says the epoch
        was interrupted after some steps (a run resumed from an intra-epoch checkpoint), its first batches are
        drawn again but not decoded, so that the rest of the epoch holds the clips it would have held."""
        self.epoch = self.damage.epoch = int(epoch)
        self.plan = plan_epoch(
            self._clips_per_shard(), self.world_size, self.num_workers, self.batch_size, self.epoch, self.seed
        )
        self.skip = int(self.steps_done()) if self.steps_done is not None else 0

    def __len__(self):
        """The epoch's steps in this process (those of a resumed epoch included, as SpeechBrain counts them)."""
        return sum(len(part["batches"]) for part in self.plan[self.rank])

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        parts = self.plan[self.rank]
        if worker is None:  # the main process reads every worker's part, one after the other
            left = self.skip
            for part in parts:
                yield from self._batches(part, min(left, len(part["batches"])))
                left -= min(left, len(part["batches"]))
            return
        if worker.num_workers != self.num_workers:
            raise DataError(
                f"ShardStream was planned for {self.num_workers} workers, the loader has {worker.num_workers}"
            )
        skips = round_robin_counts([len(part["batches"]) for part in parts], self.skip)
        yield from self._batches(parts[worker.id], skips[worker.id])

    def _records(self, part):
        """The whole clips of the part's shards in turn; damage is reported, and skipped."""
        for index in part["shards"]:
            record = self.shards[index]
            for clip in self.damage.read_shard(record["path"], self.limits, record):
                yield from [clip] * self._draws(clip.meta["id"])

    def _batches(self, part, skip=0):
        """The part's batches from a shuffle buffer of records; the first ``skip`` are drawn, not decoded."""
        frames = self.settings.get("frames")
        transform = FrameTransform(frames["size"], train=True) if frames else None
        rng = random.Random(hash((self.seed, self.epoch, self.rank, tuple(part["shards"]))))
        sizes, buffer, drawn, last = list(part["batches"]), [], [0], [None]

        def example(clip):
            """A clip's training example, or ``None`` (reported) when its frames do not decode."""
            try:
                return training_example(
                    clip, self.settings["sample_rate"], self.crop_seconds, self.label_encoders, frames, transform
                )
            except (OSError, ValueError) as error:  # a frame that passed its header check but does not decode
                self.damage.add(clip.shard, "bad_frame", f"clip {clip.meta['id']}: {error}")
                return None

        def batch(records):
            """A padded batch of the records' examples, or ``None`` for a batch skipped on resume."""
            drawn[0] += 1
            if drawn[0] <= skip:
                return None
            examples = [made for made in map(example, records) if made is not None]
            if examples:
                last[0] = examples
            return sb.dataio.batch.PaddedBatch(examples or last[0])

        records = []
        for record in self._records(part):
            buffer.append(record)
            if len(buffer) >= self.shuffle_buffer and sizes:
                records = self._draw(buffer, sizes.pop(0), rng)
                made = batch(records)
                if made is not None:
                    yield made
        rng.shuffle(buffer)
        while sizes and buffer:
            size = sizes.pop(0)
            records, buffer = buffer[:size], buffer[size:]
            made = batch(records)
            if made is not None:
                yield made
        if sizes and records:  # clips were lost to damage: every process must still make the planned steps
            logger.warning(
                "%d batches of this epoch repeat clips already used (damaged clips left them short), so that "
                "every process makes the same number of steps",
                len(sizes),
            )
            for _ in sizes:
                made = batch(records)
                if made is not None:
                    yield made

    @staticmethod
    def _draw(buffer, size, rng):
        """``size`` records drawn at random from the buffer (and taken out of it)."""
        picked = []
        for _ in range(min(size, len(buffer))):
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            picked.append(buffer.pop())
        return picked
