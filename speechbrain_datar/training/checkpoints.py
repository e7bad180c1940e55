"""A SpeechBrain ``Checkpointer`` whose checkpoints survive the process being killed mid-save."""

import logging
import os
import pathlib
import shutil

from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_datar.errors import disk_full_error, is_disk_full

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


class CrashSafeCheckpointer(Checkpointer):
    """``Checkpointer`` that makes a checkpoint visible only once all its files are written.

    SpeechBrain's checkpointer writes the meta file (which marks a folder as a
    checkpoint) before the parameter files, so a run killed during a save leaves
    a checkpoint with truncated files that breaks the next resume. Here the meta
    file is written under a temporary name and renamed (atomically) after every
    recoverable is saved; folders of interrupted saves are removed at the next save.
    Under DDP every process waits until the checkpoint is published, so that all
    of them see the same checkpoints when ``save_and_keep_only`` chooses deletions.
    A full disk ends the save with a ``DiskFullError`` naming the folder.

    Arguments are those of ``speechbrain.utils.checkpoints.Checkpointer``.

    Example
    -------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> ckpt = CrashSafeCheckpointer(folder, recoverables={"model": torch.nn.Linear(2, 2)})
    >>> _ = ckpt.save_checkpoint(meta={"top1": 50.0})
    >>> len(ckpt.list_checkpoints())
    1
    """

    def _save_checkpoint_metafile(self, fpath, meta_to_include=None, end_of_epoch=True):
        fpath = pathlib.Path(fpath)
        self._pending_meta = fpath
        return super()._save_checkpoint_metafile(
            fpath.with_name(fpath.name + PARTIAL_SUFFIX), meta_to_include or {}, end_of_epoch
        )

    def remove_interrupted_saves(self):
        """Deletes checkpoint folders whose save never finished."""
        if not os.path.isdir(self.checkpoints_dir):
            return
        for path in pathlib.Path(self.checkpoints_dir).glob(f"{CKPT_PREFIX}*"):
            if path.is_dir() and not (path / METAFNAME).exists():
                logger.warning("removing %s: its save was interrupted", path)
                shutil.rmtree(path, ignore_errors=True)

    def save_checkpoint(self, *args, **kwargs):
        """Saves all recoverables, then publishes the checkpoint by renaming its meta file."""
        if if_main_process():
            self.remove_interrupted_saves()
        self._pending_meta = None
        try:
            checkpoint = super().save_checkpoint(*args, **kwargs)
        except (OSError, RuntimeError) as error:
            if not is_disk_full(error):
                raise
            # The unfinished folder is no checkpoint (no meta file) and goes at the next save.
            raise disk_full_error(self.checkpoints_dir, "saving a checkpoint; the earlier ones are intact") from error
        if self._pending_meta is not None:
            partial = self._pending_meta.with_name(self._pending_meta.name + PARTIAL_SUFFIX)
            os.replace(partial, self._pending_meta)
        # Other processes list the checkpoints next (to choose which to delete):
        # they must all see this one published, or their deletions disagree.
        ddp_barrier()
        return checkpoint
