"""Tar shards of a prepared data set: written once, streamed to every training process.

At AudioSet or VGGSound scale, opening and decoding one media file per training example makes the
loader, not the model, the bound of a run. ``write_shards`` decodes every clip of the prepared
manifests once and writes each split into tar shards of about ``shard_megabytes``:

- ``<n>.json``: the clip's manifest entry (labels, duration, ...) and what the shard holds of it;
- ``<n>.audio.npy``: its mono waveform at the recipe's rate, float32, exactly what ``load_clip`` gives
  (lossless: evaluation from shards equals evaluation from the files);
- audio-visual recipes, training split: ``<n>.frame.<k>.jpg``, the clip's frames on a grid of
  ``frame_rate`` frames per second (every frame of the video for consecutive sampling; the very frames
  training reads when the clip is not longer than the span), JPEG at a short
  side a little above the model's frame size, enough for random resized crops;
- audio-visual recipes, evaluation splits: ``<n>.crop.<k>.png``, the evaluation crops' frames exactly as
  the file pipeline gives them (lossless), and their starts in the JSON.

``<split>-000000.tar`` are finished shards; each has a ``.json`` beside it (its clips, their positions
in the split's order, its size and SHA-256), so that a killed write continues after the last finished
shard and ``check_shards`` can verify every shard. ``shards.json`` records the settings and the
preparation (SHA-256 of the manifests) the shards were written from: a folder written from another
preparation, or with another sample rate or frame setting, is refused. ``shards_report.json`` says what
went in and what was left out, and why.

Training streams the shards (``ShardStream``): every epoch, shards are dealt to the training processes
and their loader workers (each shard read by one worker, sequentially), clips are shuffled within a
buffer, and each process gets the same number of batches, so that every clip is seen exactly once per
epoch whatever the number of processes and workers. Evaluation reads its shards by position
(``shard_eval_dataset``) and gives the same items as the file pipelines.

The package: ``format`` (settings, records, finished shards), ``writing``, ``checking``, ``planning`` (an
epoch's draws and batches), ``streaming`` (``ShardStream``), ``evaluation`` (``shard_eval_dataset``), and the
command line (``python -m speechbrain_datar.dataio.shards check <folder>``).
"""

from speechbrain_datar.dataio.shards.checking import check_shards
from speechbrain_datar.dataio.shards.evaluation import shard_eval_dataset
from speechbrain_datar.dataio.shards.format import (
    FRAME_SIDE_MARGIN,
    INFO_FILE,
    JPEG_QUALITY,
    MAX_RECORD_FILE_BYTES,
    MIN_CLIP_BYTES,
    REPORT_FILE,
    SHARD_RECORD_NAME,
    file_sha256,
    finished_shards,
    member_cap,
    open_shard_folder,
    read_json_file,
    read_shard_info,
    shard_info,
    shard_problem,
    shard_record,
    shard_settings,
)
from speechbrain_datar.dataio.shards.planning import draws_in_epoch, plan_epoch, round_robin_counts
from speechbrain_datar.dataio.shards.streaming import DamageReport, ShardStream, nearest, training_example
from speechbrain_datar.dataio.shards.writing import (
    encode_clip,
    fresh_file,
    split_order,
    training_frame_times,
    write_shards,
)

__all__ = [
    "DamageReport",
    "FRAME_SIDE_MARGIN",
    "INFO_FILE",
    "JPEG_QUALITY",
    "MAX_RECORD_FILE_BYTES",
    "MIN_CLIP_BYTES",
    "REPORT_FILE",
    "SHARD_RECORD_NAME",
    "ShardStream",
    "check_shards",
    "draws_in_epoch",
    "encode_clip",
    "file_sha256",
    "finished_shards",
    "fresh_file",
    "member_cap",
    "nearest",
    "open_shard_folder",
    "plan_epoch",
    "read_json_file",
    "read_shard_info",
    "round_robin_counts",
    "shard_eval_dataset",
    "shard_info",
    "shard_problem",
    "shard_record",
    "shard_settings",
    "split_order",
    "training_example",
    "training_frame_times",
    "write_shards",
]
