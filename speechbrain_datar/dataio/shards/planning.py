"""Planning an epoch: how many times each clip is drawn, and equal batches for every process and worker.

Part of ``speechbrain_datar.dataio.shards`` (the package documents the format).
"""

import math
import os
import random

import torch

from speechbrain_datar.errors import DataError


def draws_in_epoch(expected, seed, epoch, clip_id):
    """How many times a clip whose expected count per epoch is ``expected`` is used in ``epoch``: its whole
    part, plus one with the probability of its fraction (drawn from ``seed``, ``epoch`` and the clip's id, so
    that every process draws the same).

    Example
    -------
    >>> [draws_in_epoch(2.0, 0, 1, "a"), draws_in_epoch(0.0, 0, 1, "a")]
    [2, 0]
    >>> sum(draws_in_epoch(0.25, 0, epoch, "a") for epoch in range(4000)) / 4000
    0.25375
    """
    whole = int(expected)
    return whole + (random.Random(f"{seed}/{epoch}/{clip_id}").random() < expected - whole)


def round_robin_counts(batches, steps):
    """How many batches each worker has given after ``steps`` batches of a ``DataLoader`` that takes them in
    turn from workers holding ``batches`` each (a worker that has given all of its batches is passed over).

    Example
    -------
    >>> round_robin_counts([3, 1, 2], 5)
    [2, 1, 2]
    """
    counts = [0] * len(batches)
    done = 0
    while done < steps and any(c < b for c, b in zip(counts, batches)):
        for w, total in enumerate(batches):
            if done < steps and counts[w] < total:
                counts[w] += 1
                done += 1
    return counts


def _rank_and_world_size():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def plan_epoch(counts, world_size, num_workers, batch_size, epoch, seed):
    """Deals shards to processes and workers for one epoch, and sizes their batches.

    Shards go, in an order shuffled by ``(seed, epoch)``, largest first, to the process and then the worker
    holding the fewest clips; each worker splits its clips into batches of at most ``batch_size``, and
    processes that would make fewer steps than the others split some batches further, so that every process
    makes the same number of steps (distributed training needs it) and every clip is in one batch.

    Returns
    -------
    list
        Per process, per worker: ``{"shards": [shard index, ...], "batches": [size, ...]}``.

    Example
    -------
    >>> plan = plan_epoch([10, 10, 10, 3], world_size=2, num_workers=1, batch_size=8, epoch=0, seed=0)
    >>> [sum(sum(w["batches"]) for w in rank) for rank in plan], [sum(len(w["batches"]) for w in rank) for rank in plan]
    ([20, 13], [3, 3])
    """
    order = list(range(len(counts)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    order.sort(key=lambda i: -counts[i])  # stable: equal shards stay in the shuffled order
    ranks = [[{"shards": [], "clips": 0} for _ in range(num_workers)] for _ in range(world_size)]
    totals = [0] * world_size
    for index in order:
        rank = min(range(world_size), key=lambda r: totals[r])
        worker = min(ranks[rank], key=lambda w: w["clips"])
        worker["shards"].append(index)
        worker["clips"] += counts[index]
        totals[rank] += counts[index]
    steps = [[math.ceil(w["clips"] / batch_size) for w in workers] for workers in ranks]
    target = max(sum(s) for s in steps)
    if min(totals) < target:
        raise DataError(
            f"{len(counts)} training shards cannot give {world_size} processes the same number of steps "
            f"(one gets {min(totals)} clips, another {target} batches): write smaller shards (shard_megabytes)"
        )
    for workers, worker_steps in zip(ranks, steps):
        while sum(worker_steps) < target:  # more, smaller batches where a worker has clips to spare
            spare = max(range(len(workers)), key=lambda w: workers[w]["clips"] / max(1, worker_steps[w]))
            worker_steps[spare] += 1
    return [
        [{"shards": w["shards"], "batches": _even_sizes(w["clips"], n)} for w, n in zip(workers, worker_steps)]
        for workers, worker_steps in zip(ranks, steps)
    ]


def _even_sizes(clips, batches):
    """``clips`` split into ``batches`` sizes that differ by at most one."""
    if not batches:
        return []
    base, extra = divmod(clips, batches)
    return [base + (i < extra) for i in range(batches)]
