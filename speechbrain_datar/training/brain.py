"""The classification ``Brain`` shared by the VGGSound, Kinetics-Sounds, EPIC-Kitchens, FSD50K and AudioSet recipes.

It reads waveforms, computes features with the recipe's ``compute_features`` and
``mean_var_norm`` modules, applies ``feature_augment`` and mixup in training,
embeds with ``embedding_model`` and classifies with ``classifier`` (one head, or
several named heads). Validation and test clips are classified by sliding
windows whose scores are averaged, exactly as the exported model does. A head built with
``multi_label`` (independent classes) makes it a tagger: binary cross-entropy against multi-hot
targets (mixed by mixup), and mAP, AUC and d-prime in evaluation.

hparams it reads, all set in the recipe's YAML: ``mixup_alpha``, ``mixup_prob``, ``modality_mixup``,
``label_smoothing``, ``topk``, ``eval_window_frames``, ``eval_hop_frames``, ``eval_max_windows``,
``sample_rate``, ``clip_seconds``,
``train_logger``, ``epoch_counter``, ``output_folder``; and these objects, each
``null`` when unused:

- ``wave_augment``: a SpeechBrain ``Augmenter`` applied to training waveforms (gain, time shift, noise),
  before the features; it must keep the batch's size (no ``concat_original``, no repeats);
- ``feature_augment``: a SpeechBrain ``Augmenter`` applied to training features;
- ``lr_annealing``: an epoch-level scheduler called with the valid loss (``NewBobScheduler``, ...);
- ``lr_scheduler``: a per-step scheduler called as ``lr_scheduler(optimizer)`` before every optimiser
  step (SpeechBrain's ``NoamScheduler``, ..., or ``WarmupCosineScheduler``; one with
  ``set_steps_per_epoch`` is told the length of an epoch);
- ``coarse_to_fine``: a ``CoarseToFineSchedule``. At each of its phase changes the Brain calls
  ``on_phase_change``;
- ``frame_norm``: normalises the frames of audio-visual batches (those with a ``frames`` item), which
  go to ``embedding_model(feats, lengths, frames=...)``.
"""

import contextlib
import copy
import time

import speechbrain as sb
import torch

from speechbrain_datar.errors import DataError
from speechbrain_datar.inference.sliding_window import average_window_scores, sliding_window_embeddings
from speechbrain_datar.inference.temporal_crops import embed_crops
from speechbrain_datar.nnet.classifier import binary_cross_entropy, is_multi_label
from speechbrain_datar.nnet.layers import unwrap_module
from speechbrain_datar.training.metrics import (
    ClassificationMetrics,
    TaggingMetrics,
    drop_unsaved_epochs,
    write_test_reports,
)


LR_SCHEDULES = ("lr_annealing", "lr_scheduler")


class AudioClassificationBrain(sb.Brain):
    """SpeechBrain ``Brain`` for clip-level audio classification with one or several heads.

    Arguments
    ---------
    label_encoders : dict
        Label key -> fitted ``CategoricalEncoder``, one per head (``label`` for one head);
        batches carry ``<key>_encoded``.
    main_metric : str or None
        The valid statistic that picks the best checkpoint (default ``top1``, or
        ``<first key>_top1`` with several heads).
    extra_statistics : sequence of callables
        Each maps ``{key: ClassificationMetrics}`` of an evaluation pass to a dict of
        further statistics in percent (EPIC's action accuracy).
    *args, **kwargs
        As for ``speechbrain.Brain``.
    """

    def __init__(self, *args, label_encoders, main_metric=None, extra_statistics=(), **kwargs):
        super().__init__(*args, **kwargs)
        if not label_encoders:
            raise ValueError("at least one label encoder is needed")
        self.label_encoders = label_encoders
        self.label_keys = list(label_encoders)
        single = len(self.label_keys) == 1
        head = unwrap_module(self.modules.classifier)
        # Multi-label tagging when the head's classes are independent (``multi_label`` in the YAML).
        self.multi_label = is_multi_label(head)
        first = "mAP" if self.multi_label else "top1"
        self.main_metric = main_metric or (first if single else f"{self.label_keys[0]}_{first}")
        self.extra_statistics = list(extra_statistics)
        self.phases = self.hparams.coarse_to_fine
        if self.phases is not None and not self.phases.enabled:
            self.phases = None
        self._mix = None
        self.metrics = {}
        self._initial_schedule_states = {}
        self.train_batches = None
        self._epoch_start = None
        self.train_seconds = None

    # ----------------------------------------------------------------- forward
    def audio_features(self, wavs, lens):
        """Waveforms -> normalised features ``[batch, time, n_mels]`` (of the current phase)."""
        return self.modules.mean_var_norm(self.modules.compute_features(wavs), lens)

    def compute_features(self, batch, stage=None):
        """The batch's normalised features and their lengths; in training, of the augmented waveforms."""
        wavs, lens = batch.sig
        if stage == sb.Stage.TRAIN and self.hparams.wave_augment is not None:
            augmented, lens = self.hparams.wave_augment(wavs, lens)
            if augmented.shape[0] != wavs.shape[0]:
                raise DataError("wave_augment must keep the batch's size: set concat_original: False and "
                                "repeat_augment: 1 in its Augmenter")
            wavs = augmented
        return self.audio_features(wavs, lens), lens

    def _mixup(self, feats, lens, frames=None):
        """Mixup of the batch with a permutation of itself; with frames and ``modality_mixup``, each modality
        gets its own weight (MBT's modality mixup). Records the weights for the loss."""
        self._mix = None
        alpha = self.hparams.mixup_alpha
        if alpha <= 0 or feats.shape[0] < 2 or torch.rand(()).item() >= self.hparams.mixup_prob:
            return feats, lens, frames
        beta = torch.distributions.Beta(alpha, alpha)
        perm = torch.randperm(feats.shape[0], device=feats.device)
        lams = [beta.sample().item()]
        feats, lens = lams[0] * feats + (1 - lams[0]) * feats[perm], torch.maximum(lens, lens[perm])
        if frames is not None:
            lams.append(beta.sample().item() if self.hparams.modality_mixup else lams[0])
            frames = lams[1] * frames + (1 - lams[1]) * frames[perm]
        self._mix = (lams, perm)
        return feats, lens, frames

    def compute_frames(self, batch):
        """The batch's normalised frames ``[batch, n_frames, 3, H, W]`` (evaluation: ``[batch, n_crops, ...]``), or
        ``None`` (audio-only batches)."""
        if not hasattr(batch, "frames"):
            return None
        return self.hparams.frame_norm(batch.frames.data)

    def compute_forward(self, batch, stage):
        """Training: one embedding per (cropped) clip. Evaluation: averaged sliding windows (audio), or
        temporal crops with their frames, logits averaged (audio-visual: MBT's protocol)."""
        batch = batch.to(self.device)
        frames = self.compute_frames(batch)
        if stage != sb.Stage.TRAIN and frames is not None:
            wavs, lens = batch.sig
            embeddings = embed_crops(self.modules.embedding_model, self.audio_features, wavs, lens, frames,
                                     batch.crop_starts.data, self.hparams.sample_rate, self.hparams.clip_seconds)
            return self.modules.classifier(embeddings)
        feats, lens = self.compute_features(batch, stage)
        if stage == sb.Stage.TRAIN:
            if self.hparams.feature_augment is not None:
                feats, lens = self.hparams.feature_augment(feats, lens)
            feats, lens, frames = self._mixup(feats, lens, frames)
            media = {} if frames is None else {"frames": frames}
            return self.modules.classifier(self.modules.embedding_model(feats, lens, **media))
        window, hop = self.hparams.eval_window_frames, self.hparams.eval_hop_frames
        if self.phases is not None:
            window, hop = self.phases.frames(window), self.phases.frames(hop)
        embeddings, valid = sliding_window_embeddings(
            self.modules.embedding_model, feats, lens, window, hop, self.hparams.eval_max_windows
        )
        return average_window_scores(self.modules.classifier, embeddings, valid)

    def compute_objectives(self, predictions, batch, stage):
        """Sum of the heads' NLL losses, or binary cross-entropies for multi-label heads (mixed targets under
        mixup); accumulates metrics in evaluation."""
        if not isinstance(predictions, dict):
            predictions = {self.label_keys[0]: predictions}
        smoothing = self.hparams.label_smoothing
        loss = 0.0
        for key in self.label_keys:
            log_probs = predictions[key]
            targets = getattr(batch, f"{key}_encoded").data
            targets = targets.unsqueeze(1) if self.multi_label else targets.reshape(-1, 1)
            if stage == sb.Stage.TRAIN and self._mix is not None and log_probs.shape[1] < len(set(self._mix[0])):
                # scenic refuses this too: one output for two differently mixed modalities has no target
                raise DataError("modality_mixup needs one output per modality (pooling: cls, both modalities)")
            if stage == sb.Stage.TRAIN and log_probs.shape[1] > 1:
                # one row per modality (MBT): each modality's loss, averaged
                loss = loss + sum(
                    self._row_loss(log_probs[:, row : row + 1], targets, row, smoothing, stage)
                    for row in range(log_probs.shape[1])
                ) / log_probs.shape[1]
            else:
                loss = loss + self._row_loss(log_probs, targets, 0, smoothing, stage)
            if stage != sb.Stage.TRAIN:
                self.metrics[key].append(batch.id, log_probs, targets[:, 0] if self.multi_label else targets.reshape(-1))
        return loss

    def _loss(self, log_probs, targets, smoothing):
        """NLL of the target classes, or the binary cross-entropy of multi-hot targets (multi-label)."""
        if self.multi_label:
            return binary_cross_entropy(log_probs, targets.expand_as(log_probs))
        return sb.nnet.losses.nll_loss(log_probs, targets, label_smoothing=smoothing)

    def _row_loss(self, log_probs, targets, row, smoothing, stage):
        """NLL of one output row; in training under mixup, against the mixed targets with that row's modality
        weight (rows are the modalities in order: audio, then video)."""
        loss = self._loss(log_probs, targets, smoothing)
        if stage != sb.Stage.TRAIN or self._mix is None:
            return loss
        lams, perm = self._mix
        lam = lams[min(row, len(lams) - 1)]
        # Both losses are linear in the targets: for multi-label heads this is the loss of the mixed label vectors.
        return lam * loss + (1 - lam) * self._loss(log_probs, targets[perm], smoothing)

    # ---------------------------------------------------- schedules and phases
    def make_dataloader(self, dataset, stage, *args, **kwargs):
        """SpeechBrain's loader; remembers how many batches a training epoch has."""
        loader = super().make_dataloader(dataset, stage, *args, **kwargs)
        if stage == sb.Stage.TRAIN:
            self.train_batches = len(loader)
        return loader

    def on_fit_start(self):
        """Enters the phase of the checkpoint to resume (before the optimiser is built and the weights
        load, so that every shape matches), records the schedulers' initial state, recovers, and drops log
        entries of epochs the checkpoint does not have (they are trained again)."""
        if self.phases is not None:
            self.phases.enter(self.phases.resumed_phase(self.checkpointer))
        scheduler = self.hparams.lr_scheduler
        if scheduler is not None and hasattr(scheduler, "set_steps_per_epoch") and self.train_batches:
            scheduler.set_steps_per_epoch(-(-self.train_batches // self.grad_accumulation_factor))
        self._initial_schedule_states = {
            name: copy.deepcopy(vars(getattr(self.hparams, name)))
            for name in LR_SCHEDULES if getattr(self.hparams, name) is not None
        }
        super().on_fit_start()
        if sb.utils.distributed.if_main_process():
            drop_unsaved_epochs(self.hparams.train_logger.save_file, self.hparams.epoch_counter.current)

    def on_fit_batch_start(self, batch, should_step):
        """A per-step scheduler sets the learning rate of the step about to be taken."""
        if should_step and self.hparams.lr_scheduler is not None:
            self.hparams.lr_scheduler(self.optimizer)

    @contextlib.contextmanager
    def _unwrapped_modules(self):
        """Gives the plain modules to the code inside (which may change their shapes), then compiles and
        wraps them again exactly as ``Brain.on_fit_start`` does.

        SpeechBrain has no public call for this: ``_compile`` and ``_wrap_distributed``
        are private, and this is the only place that calls them
        (``tests/test_brain.py`` fails if SpeechBrain's ``on_fit_start`` stops using them).
        """
        for name, module in self.modules.items():
            self.modules[name] = unwrap_module(module)
        yield
        self._compile()
        self._wrap_distributed()

    def on_phase_change(self, phase):
        """Coarse-to-fine transition: the modules take the phase's shapes, the optimiser and the
        learning-rate schedulers restart from their initial state."""
        with self._unwrapped_modules():
            self.phases.enter(phase)
        self.init_optimizers()
        for name, state in self._initial_schedule_states.items():
            schedule = vars(getattr(self.hparams, name))  # reset in place: the checkpointer holds this object
            schedule.clear()
            schedule.update(copy.deepcopy(state))

    # ------------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Phase changes before training epochs; fresh metrics for each evaluation pass."""
        if stage == sb.Stage.TRAIN:
            if self.phases is not None and epoch is not None:
                phase = self.phases.phase_of_epoch(epoch)
                if phase != self.phases.current:
                    self.on_phase_change(phase)
            self._epoch_start = time.time()
        else:
            topk = tuple(self.hparams.topk)
            self.metrics = {
                key: TaggingMetrics(len(encoder)) if self.multi_label else ClassificationMetrics(len(encoder), topk)
                for key, encoder in self.label_encoders.items()
            }

    def stage_statistics(self, stage_loss):
        """Loss and top-k accuracies (percent) of the finished evaluation pass, and the extra statistics."""
        stats = {"loss": stage_loss}
        for key, metrics in self.metrics.items():
            prefix = "" if len(self.label_keys) == 1 else f"{key}_"
            for name, value in metrics.statistics().items():
                stats[prefix + name] = value
        for extra in self.extra_statistics:
            stats.update(extra(self.metrics))
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, anneals the learning rate, checkpoints on the best valid statistic, writes test reports."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            self.train_seconds = time.time() - self._epoch_start if self._epoch_start else None
            return
        stats = self.stage_statistics(stage_loss)
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            if self.hparams.lr_annealing is not None:
                lr, new_lr = self.hparams.lr_annealing(stats["loss"])
                sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            meta = {"epoch": epoch, "lr": lr}
            if self.phases is not None:
                meta.update(phase=self.phases.current + 1, factor=self.phases.factor)
            if self.train_seconds is not None:
                meta["train_seconds"] = round(self.train_seconds, 2)
            self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=self.train_stats, valid_stats=stats)
            ranked = dict(stats)
            if self.phases is not None and self.phases.current < len(self.phases.phases) - 1:
                # The model is tested and exported at full resolution: a coarse phase's checkpoint
                # is kept for resuming only, never as the best one.
                ranked[self.main_metric] = float("-inf")
            self.checkpointer.save_and_keep_only(meta=ranked, max_keys=[self.main_metric])
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            self.test_stats = stats
            if sb.utils.distributed.if_main_process():
                write_test_reports(self.hparams.output_folder, self.metrics, self.label_encoders)
