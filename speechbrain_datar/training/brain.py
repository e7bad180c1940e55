"""The classification ``Brain`` shared by the VGGSound, Kinetics-Sounds and EPIC-Kitchens recipes.

It reads waveforms, computes features with the recipe's ``compute_features`` and
``mean_var_norm`` modules, applies SpecAugment-style masking and mixup in
training, embeds with ``embedding_model`` and classifies with ``classifier`` (one
head, or several named heads). Validation and test clips are classified by
sliding windows whose scores are averaged, exactly as the exported model does.

hparams it reads (besides the modules): ``feature_augment`` (list of modules, optional), ``mixup_alpha`` and
``mixup_prob``, ``label_smoothing``, ``topk``, ``eval_window_frames``,
``eval_hop_frames``, ``train_logger``, ``epoch_counter``, ``output_folder``,
``lr_annealing`` (optional, a SpeechBrain scheduler called with the valid loss),
``coarse_to_fine`` (optional ``CoarseToFineSchedule``) and ``feature_options``.
"""

import copy
import hashlib
import logging
import os
import time

import speechbrain as sb
import torch

from speechbrain_datar.inference.sliding_window import average_window_scores, sliding_window_embeddings
from speechbrain_datar.nnet.layers import unwrap_module
from speechbrain_datar.training.coarse_to_fine import CoarseToFineSchedule
from speechbrain_datar.training.metrics import (
    ClassificationMetrics,
    write_confusion_matrix,
    write_predictions,
)

logger = logging.getLogger(__name__)


def weights_fingerprint(module):
    """SHA-256 of all parameters and buffers, in order: equal weights give equal fingerprints.

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> b.load_state_dict(a.state_dict())
    <All keys matched successfully>
    >>> weights_fingerprint(a) == weights_fingerprint(b)
    True
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


class AudioClassificationBrain(sb.Brain):
    """SpeechBrain ``Brain`` for clip-level audio classification with one or several heads.

    Arguments
    ---------
    label_encoders : dict
        Label key -> fitted ``CategoricalEncoder``, one per head (``label`` for one head);
        batches carry ``<key>_encoded``.
    *args, **kwargs
        As for ``speechbrain.Brain``.
    """

    def __init__(self, *args, label_encoders, **kwargs):
        super().__init__(*args, **kwargs)
        if not label_encoders:
            raise ValueError("at least one label encoder is needed")
        self.label_encoders = label_encoders
        self.label_keys = list(label_encoders)
        self.main_metric = "top1" if len(self.label_keys) == 1 else "action_top1"
        self._mix = None
        self.metrics = {}
        schedule = getattr(self.hparams, "coarse_to_fine", None)
        self.schedule = schedule if schedule is not None and schedule.enabled else None
        self._initial_annealing = copy.deepcopy(getattr(self.hparams, "lr_annealing", None))
        self._epoch_start = None
        self.train_seconds = None

    # ----------------------------------------------------------------- forward
    def compute_features(self, batch):
        """Waveforms -> normalised features ``[batch, time, n_mels]`` (of the current phase) and lengths."""
        wavs, lens = batch.sig
        if self.schedule is None:
            return self.modules.mean_var_norm(self.modules.compute_features(wavs), lens), lens
        feats = self.schedule.features(wavs, self.modules.compute_features, self.hparams.feature_options)
        feats = self.modules.mean_var_norm(feats, lens)
        return self.schedule.compress(feats), lens

    def _eval_window(self):
        window, hop = self.hparams.eval_window_frames, self.hparams.eval_hop_frames
        if self.schedule is None:
            return window, hop
        return self.schedule.frames(window), self.schedule.frames(hop)

    def _mixup(self, feats, lens):
        self._mix = None
        alpha = getattr(self.hparams, "mixup_alpha", 0.0) or 0.0
        prob = getattr(self.hparams, "mixup_prob", 1.0)
        if alpha <= 0 or feats.shape[0] < 2 or torch.rand(()).item() >= prob:
            return feats, lens
        lam = torch.distributions.Beta(alpha, alpha).sample().item()
        perm = torch.randperm(feats.shape[0], device=feats.device)
        self._mix = (lam, perm)
        return lam * feats + (1 - lam) * feats[perm], torch.maximum(lens, lens[perm])

    def compute_forward(self, batch, stage):
        """Training: one embedding per (cropped) clip. Evaluation: averaged sliding windows."""
        batch = batch.to(self.device)
        feats, lens = self.compute_features(batch)
        if stage == sb.Stage.TRAIN:
            for augment in getattr(self.hparams, "feature_augment", None) or []:
                feats = augment(feats)
            feats, lens = self._mixup(feats, lens)
            return self.modules.classifier(self.modules.embedding_model(feats, lens))
        window, hop = self._eval_window()
        embeddings, valid = sliding_window_embeddings(self.modules.embedding_model, feats, lens, window, hop)
        return average_window_scores(self.modules.classifier, embeddings, valid)

    def _as_dict(self, predictions):
        return predictions if isinstance(predictions, dict) else {self.label_keys[0]: predictions}

    def compute_objectives(self, predictions, batch, stage):
        """Sum of the heads' NLL losses (mixed targets under mixup); accumulates metrics in evaluation."""
        predictions = self._as_dict(predictions)
        smoothing = getattr(self.hparams, "label_smoothing", 0.0) or 0.0
        loss = 0.0
        for key in self.label_keys:
            log_probs = predictions[key]
            targets = getattr(batch, f"{key}_encoded").data.reshape(-1, 1)
            if stage == sb.Stage.TRAIN and self._mix is not None:
                lam, perm = self._mix
                loss = loss + lam * sb.nnet.losses.nll_loss(log_probs, targets, label_smoothing=smoothing)
                loss = loss + (1 - lam) * sb.nnet.losses.nll_loss(
                    log_probs, targets[perm], label_smoothing=smoothing
                )
            else:
                loss = loss + sb.nnet.losses.nll_loss(log_probs, targets, label_smoothing=smoothing)
            if stage != sb.Stage.TRAIN:
                self.metrics[key].append(batch.id, log_probs, targets.reshape(-1))
        return loss

    # ------------------------------------------------------------ coarse to fine
    def _schedule_name(self):
        if self.checkpointer is None:
            return None
        return next((n for n, o in self.checkpointer.recoverables.items() if o is self.schedule), None)

    def on_fit_start(self):
        """Puts the model in the phase of the checkpoint to resume (or the first phase) before the
        optimiser is built and the checkpoint is loaded, so that every shape matches."""
        if self.schedule is not None:
            saved = CoarseToFineSchedule.saved_phase(self.checkpointer, self._schedule_name())
            self.schedule.enter(self.modules.embedding_model, saved if saved is not None else 0)
        super().on_fit_start()

    def _enter_phase(self, phase):
        """Transition: adapt grid-dependent weights, restart the optimiser and the scheduler."""
        for name, module in self.modules.items():
            self.modules[name] = unwrap_module(module)
        self.schedule.enter(self.modules.embedding_model, phase)
        self._compile()  # as Brain.__init__ does: compile (if asked), then wrap for DDP
        self._wrap_distributed()
        self.init_optimizers()
        if self._initial_annealing is not None:
            fresh = copy.deepcopy(self._initial_annealing)
            for name, obj in list(getattr(self.checkpointer, "recoverables", {}).items()):
                if obj is self.hparams.lr_annealing:
                    self.checkpointer.add_recoverable(name, fresh)
            self.hparams.lr_annealing = fresh

    # ------------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Phase transitions before training epochs; fresh metrics for each evaluation pass."""
        if stage == sb.Stage.TRAIN:
            if self.schedule is not None and epoch is not None:
                phase = self.schedule.phase_of_epoch(epoch)
                if phase != self.schedule.current:
                    self._enter_phase(phase)
            self._epoch_start = time.time()
        if stage != sb.Stage.TRAIN:
            topk = tuple(getattr(self.hparams, "topk", (1, 5)))
            self.metrics = {
                key: ClassificationMetrics(len(self.label_encoders[key]), topk) for key in self.label_keys
            }

    def stage_statistics(self, stage_loss):
        """Loss and top-k accuracies (percent) of the finished evaluation pass."""
        stats = {"loss": stage_loss}
        for key, metrics in self.metrics.items():
            prefix = "" if len(self.label_keys) == 1 else f"{key}_"
            for name, value in metrics.summarize().items():
                stats[prefix + name] = round(100.0 * value, 2)
        if len(self.label_keys) > 1 and self.metrics:
            for k in (1, 5):
                parts = [m.correct(k) for m in self.metrics.values() if k in m.topk]
                if len(parts) == len(self.metrics):
                    joint = torch.stack(parts).all(dim=0).float().mean().item()
                    stats[f"action_top{k}"] = round(100.0 * joint, 2)
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, anneals the learning rate, checkpoints on the best valid top-1, writes test reports."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            self.train_seconds = time.time() - self._epoch_start if self._epoch_start else None
            return
        stats = self.stage_statistics(stage_loss)
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            annealing = getattr(self.hparams, "lr_annealing", None)
            if annealing is not None:
                lr, new_lr = annealing(stats["loss"])
                sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            meta = {"epoch": epoch, "lr": lr}
            if self.schedule is not None:
                meta.update(phase=self.schedule.current + 1, factor=self.schedule.factor)
            if self.train_seconds is not None:
                meta["train_seconds"] = round(self.train_seconds, 2)
            self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta=stats, max_keys=[self.main_metric])
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            self.test_stats = stats
            if sb.utils.distributed.if_main_process():
                self.write_test_reports()

    def write_test_reports(self):
        """Per-clip predictions, confusion matrices (CSV, and PNG when matplotlib is installed)."""
        folder = self.hparams.output_folder
        for key, metrics in self.metrics.items():
            encoder = self.label_encoders[key]
            suffix = "" if len(self.label_keys) == 1 else f"_{key}"
            labels = [encoder.ind2lab[i] for i in range(len(encoder))]
            write_predictions(
                os.path.join(folder, f"test_predictions{suffix}.csv"), metrics.predictions(),
                lambda index: encoder.ind2lab[index],
            )
            matrix = metrics.confusion_matrix()
            write_confusion_matrix(os.path.join(folder, f"confusion_matrix{suffix}.csv"), matrix, labels)
            try:
                from speechbrain_datar.visualize import plot_confusion_matrix
            except ImportError:  # matplotlib is an optional extra
                logger.info("matplotlib not installed: confusion matrix written as CSV only")
                continue
            plot_confusion_matrix(matrix, labels, os.path.join(folder, f"confusion_matrix{suffix}.png"))
