"""The classification ``Brain`` shared by the VGGSound, Kinetics-Sounds, EPIC-Kitchens, FSD50K and AudioSet recipes.

It reads waveforms, computes features with the recipe's ``compute_features`` and
``mean_var_norm`` modules, applies ``feature_augment`` and mixup in training,
embeds with ``embedding_model`` and classifies with ``classifier`` (one head, or
several named heads). Validation and test clips are classified by sliding
windows whose scores are averaged, exactly as the exported model does. A head built with
``multi_label`` (independent classes) makes it a tagger: binary cross-entropy against multi-hot
targets (mixed by mixup), and mAP, AUC and d-prime in evaluation.

hparams it reads, all set in the recipe's YAML: ``topk``, ``train_logger``, ``epoch_counter``,
``output_folder``; the objects ``mixup`` (``training.mixup.Mixup``) and ``evaluation`` (how validation and
test clips are classified: ``SlidingWindows``, or ``TemporalCrops`` for audio-visual models, the
exported model's protocol too); and these objects, each ``null`` when unused:

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

With ``teacher_scores`` (``training.distillation.TeacherScores``) the training loss adds the hparams'
``distillation`` term (``Distillation.combine``) against the teacher's probabilities of the batch's clips.
"""

import contextlib
import copy
import time

import speechbrain as sb

from speechbrain_datar.deprecation import warn_moved
from speechbrain_datar.errors import DataError
from speechbrain_datar.nnet.layers import unwrap_module
from speechbrain_datar.training.distillation import fill_missing
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
    teacher_scores : TeacherScores or None
        A teacher's probabilities of the training clips: training adds the hparams' ``distillation`` term.
    *args, **kwargs
        As for ``speechbrain.Brain``.
    """

    def __init__(self, *args, label_encoders, main_metric=None, extra_statistics=(), teacher_scores=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher_scores = teacher_scores
        if not label_encoders:
            raise ValueError("at least one label encoder is needed")
        self.label_encoders = label_encoders
        self.label_keys = list(label_encoders)
        single = len(self.label_keys) == 1
        # Multi-label tagging when the head's classes are independent (``multi_label`` in the YAML).
        self.multi_label = unwrap_module(self.modules.classifier).multi_label
        first = "mAP" if self.multi_label else "top1"
        self.main_metric = main_metric or (first if single else f"{self.label_keys[0]}_{first}")
        self.extra_statistics = list(extra_statistics)
        self.coarse_to_fine = self.hparams.coarse_to_fine
        if self.coarse_to_fine is not None and not self.coarse_to_fine.enabled:
            self.coarse_to_fine = None
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

    def batch_features(self, batch, stage=None):
        """The batch's normalised features and their lengths; in training, of the augmented waveforms."""
        wavs, lens = batch.sig
        if stage == sb.Stage.TRAIN and self.hparams.wave_augment is not None:
            augmented, lens = self.hparams.wave_augment(wavs, lens)
            if augmented.shape[0] != wavs.shape[0]:
                raise DataError(
                    "wave_augment must keep the batch's size: set concat_original: False and "
                    "repeat_augment: 1 in its Augmenter"
                )
            wavs = augmented
        return self.audio_features(wavs, lens), lens

    def compute_features(self, batch, stage=None):
        """Version 0.2's name of ``batch_features``."""
        warn_moved("AudioClassificationBrain.compute_features", "batch_features")
        return self.batch_features(batch, stage)

    def compute_frames(self, batch):
        """Version 0.2's name of ``batch_frames``."""
        warn_moved("AudioClassificationBrain.compute_frames", "batch_frames")
        return self.batch_frames(batch)

    def batch_frames(self, batch):
        """The batch's normalised frames ``[batch, n_frames, 3, H, W]`` (evaluation: ``[batch, n_crops, n_frames, 3, H, W]``), or
        ``None`` (audio-only batches)."""
        if not hasattr(batch, "frames"):
            return None
        return self.hparams.frame_norm(batch.frames.data)

    def compute_forward(self, batch, stage):
        """Training: one embedding per (cropped, augmented, mixed) clip. Evaluation: the hparams' ``evaluation``
        (sliding windows whose probabilities are averaged, or temporal crops with their frames)."""
        batch = batch.to(self.device)
        frames = self.batch_frames(batch)
        if stage != sb.Stage.TRAIN:
            wavs, lens = batch.sig
            starts = batch.crop_starts.data if hasattr(batch, "crop_starts") else None
            return self.hparams.evaluation.scores(
                self.modules.embedding_model,
                self.modules.classifier,
                self.audio_features,
                wavs,
                lens,
                frames,
                starts,
                self.coarse_to_fine,
            )
        feats, lens = self.batch_features(batch, stage)
        if self.hparams.feature_augment is not None:
            feats, lens = self.hparams.feature_augment(feats, lens)
        feats, lens, frames, self._mix = self.hparams.mixup(feats, lens, frames)
        media = {} if frames is None else {"frames": frames}
        return self.modules.classifier(self.modules.embedding_model(feats, lens, **media))

    def compute_objectives(self, predictions, batch, stage):
        """The head's loss (the sum of its outputs' losses, against the mixed targets under mixup), with the
        distillation term in training when there is a teacher; metrics in evaluation."""
        targets = {key: getattr(batch, f"{key}_encoded").data for key in self.label_keys}
        head = unwrap_module(self.modules.classifier)
        loss = head.loss(predictions, targets, self._mix if stage == sb.Stage.TRAIN else None)
        if stage == sb.Stage.TRAIN and self.teacher_scores is not None:
            teacher = fill_missing(self.teacher_scores.batch(batch.id, self.device), predictions)
            loss = self.hparams.distillation.combine(loss, head, predictions, teacher, self._mix)
        if stage != sb.Stage.TRAIN:
            for key in self.label_keys:
                target = targets[key] if self.multi_label else targets[key].reshape(-1)
                self.metrics[key].append(batch.id, predictions[key], target)
        return loss

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
        if self.coarse_to_fine is not None:
            self.coarse_to_fine.enter(self.coarse_to_fine.resumed_phase(self.checkpointer))
        scheduler = self.hparams.lr_scheduler
        if scheduler is not None and hasattr(scheduler, "set_steps_per_epoch") and self.train_batches:
            scheduler.set_steps_per_epoch(-(-self.train_batches // self.grad_accumulation_factor))
        self._initial_schedule_states = {
            name: copy.deepcopy(vars(getattr(self.hparams, name)))
            for name in LR_SCHEDULES
            if getattr(self.hparams, name) is not None
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
        (``tests/unit/training/test_brain.py`` fails if SpeechBrain's ``on_fit_start`` stops using them).
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
            self.coarse_to_fine.enter(phase)
        self.init_optimizers()
        for name, state in self._initial_schedule_states.items():
            schedule = vars(getattr(self.hparams, name))  # reset in place: the checkpointer holds this object
            schedule.clear()
            schedule.update(copy.deepcopy(state))

    # ------------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Phase changes before training epochs; fresh metrics for each evaluation pass."""
        if stage == sb.Stage.TRAIN:
            if self.coarse_to_fine is not None and epoch is not None:
                phase = self.coarse_to_fine.phase_of_epoch(epoch)
                if phase != self.coarse_to_fine.current:
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
            if self.coarse_to_fine is not None:
                meta.update(phase=self.coarse_to_fine.current + 1, factor=self.coarse_to_fine.factor)
            if self.train_seconds is not None:
                meta["train_seconds"] = round(self.train_seconds, 2)
            self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=self.train_stats, valid_stats=stats)
            ranked = dict(stats)
            if self.coarse_to_fine is not None and self.coarse_to_fine.current < len(self.coarse_to_fine.phases) - 1:
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
