"""Checkpoints survive a process killed in the middle of a save."""

import torch

from speechbrain_datar.training.checkpoints import CrashSafeCheckpointer


class Exploding(torch.nn.Module):
    """A recoverable whose save fails, as a killed process would leave it."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3))
        self.fail = False

    def state_dict(self, *args, **kwargs):
        if self.fail:
            raise KeyboardInterrupt("killed while saving")
        return super().state_dict(*args, **kwargs)


def test_an_interrupted_save_is_not_a_checkpoint(tmp_path):
    model, extra = torch.nn.Linear(2, 2), Exploding()
    checkpointer = CrashSafeCheckpointer(str(tmp_path), recoverables={"model": model, "extra": extra})
    checkpointer.save_checkpoint(meta={"epoch": 1})
    saved = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    extra.fail = True
    try:
        checkpointer.save_checkpoint(meta={"epoch": 2})
    except KeyboardInterrupt:
        pass
    assert len(list(tmp_path.glob("CKPT+*"))) == 2  # the interrupted folder is on disk ...
    checkpoints = checkpointer.list_checkpoints()
    assert [c.meta["epoch"] for c in checkpoints] == [1]  # ... but is not a checkpoint
    checkpointer.recover_if_possible()
    assert torch.equal(model.weight, saved)
    extra.fail = False
    checkpointer.save_checkpoint(meta={"epoch": 3})
    assert sorted(c.meta["epoch"] for c in checkpointer.list_checkpoints()) == [1, 3]
    assert len(list(tmp_path.glob("CKPT+*"))) == 2  # the interrupted save was cleaned up


def _keep_best_in_two_processes(rank, folder, port, results):
    """One DDP process: three save_and_keep_only calls, the main process slow to publish each save."""
    import datetime
    import os
    import time

    import speechbrain_datar.training.checkpoints as checkpoints

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=20),
    )
    publish = os.replace

    def slow_publish(source, target):
        time.sleep(0.5)  # the other process reaches the listing step meanwhile
        publish(source, target)

    checkpoints.os.replace = slow_publish
    try:
        checkpointer = CrashSafeCheckpointer(folder, recoverables={"model": torch.nn.Linear(2, 2)})
        for epoch, top1 in enumerate([10.0, 30.0, 20.0], start=1):
            checkpointer.save_and_keep_only(meta={"epoch": epoch, "top1": top1}, max_keys=["top1"])
        results[rank] = sorted(c.meta["epoch"] for c in checkpointer.list_checkpoints())
    except Exception as error:  # a desynchronised collective times out here
        results[rank] = repr(error)
    finally:
        checkpoints.os.replace = publish
        torch.distributed.destroy_process_group()


def test_processes_agree_on_deletions_when_the_main_one_is_slow_to_publish(tmp_path):
    """Every process must see a new checkpoint before choosing which to delete, or DDP hangs."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_keep_best_in_two_processes, args=(str(tmp_path), port, results), nprocs=2)
    assert dict(results) == {0: [2, 3], 1: [2, 3]}  # the best and the most recent
