"""Training under hostile conditions: non-finite input, a killed run that resumes, a full disk."""

import math

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset


def test_non_finite_input_reaches_the_loss_and_speechbrain_handles_it():
    hparams = load_hyperpyyaml("""
model: !new:speechbrain_datar.lobes.models.datar.DATAR
    preset: micro
    n_mels: 16
head: !new:speechbrain_datar.nnet.classifier.Classifier
    input_size: 128
    n_classes: 2
modules:
    model: !ref <model>
    head: !ref <head>
""")

    class Diverging(sb.Brain):
        def compute_forward(self, batch, stage):
            return self.modules.head(self.modules.model(batch.feats.data))

        def compute_objectives(self, predictions, batch, stage):
            return self.modules.head.loss(predictions, {"label": batch.label})

    nan_feats = torch.randn(20, 16)
    nan_feats[3, 5] = math.nan
    data = DynamicItemDataset(
        {str(i): {"feats": nan_feats, "label": i % 2} for i in range(8)}, output_keys=["id", "feats", "label"]
    )
    brain = Diverging(
        modules=hparams["modules"], opt_class=lambda p: torch.optim.SGD(p, lr=0.1), run_opts={"device": "cpu"}
    )
    with pytest.raises(ValueError, match="Loss is not finite"):  # SpeechBrain's patience, not an IndexError
        brain.fit(range(1), data, train_loader_kwargs={"batch_size": 2})


def test_a_resumed_run_logs_each_epoch_once(tmp_path):
    from speechbrain_datar.training.metrics import drop_unsaved_epochs

    log = tmp_path / "train_log.txt"
    log.write_text("epoch: 1, lr: 1.00e-03 - train loss: 2.0\nepoch: 2, lr: 1.00e-03 - train loss: 1.5\n")
    assert drop_unsaved_epochs(str(log), 1) == 1  # epoch 2 was logged, then killed before its checkpoint
    assert log.read_text() == "epoch: 1, lr: 1.00e-03 - train loss: 2.0\n"
    assert drop_unsaved_epochs(str(log), 5) == 0


# ------------------------------------------------------------------ item 8: a full disk
def test_a_full_disk_is_named_while_the_checkpoints_stay_intact(tmp_path, monkeypatch):
    import speechbrain.utils.checkpoints

    from speechbrain_datar.errors import DiskFullError
    from speechbrain_datar.training.checkpoints import CrashSafeCheckpointer

    model = torch.nn.Linear(2, 2)
    checkpointer = CrashSafeCheckpointer(str(tmp_path), recoverables={"model": model})
    checkpointer.save_checkpoint(meta={"epoch": 1})
    saved = model.weight.detach().clone()

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6144 vs 5997")

    monkeypatch.setattr(speechbrain.utils.checkpoints.torch, "save", full)
    with pytest.raises(DiskFullError, match=f"no space left on {tmp_path}"):
        checkpointer.save_checkpoint(meta={"epoch": 2})
    monkeypatch.undo()
    assert [c.meta["epoch"] for c in checkpointer.list_checkpoints()] == [1]
    with torch.no_grad():
        model.weight.add_(1.0)
    checkpointer.recover_if_possible()
    assert torch.equal(model.weight, saved)
