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
