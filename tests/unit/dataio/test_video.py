"""Audio and frames straight from video files, in the three data sets' layouts."""

import json
import os
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import ROOT

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.synthetic import (
    frame_indices,
    index_frames,
    make_epic_kitchens_like,
    write_video,
)
from speechbrain_datar.dataio.video import read_video_frames

sys.path.insert(0, os.path.join(ROOT, "recipes", "VGGSound"))
sys.path.insert(0, os.path.join(ROOT, "recipes", "EpicKitchens100"))


@pytest.mark.parametrize("container,codec", [("mp4", "flac"), ("mkv", "flac"), ("mov", "pcm_s16le")])
def test_audio_from_a_video_equals_the_same_audio_from_a_wav(tmp_path, container, codec):
    rng = np.random.default_rng(0)
    samples = np.round(np.clip(0.3 * rng.standard_normal(16000 * 3), -1, 1) * 32767).astype(np.int16)
    wav_path, video_path = str(tmp_path / "clip.wav"), str(tmp_path / f"clip.{container}")
    soundfile.write(wav_path, samples, 16000, subtype="PCM_16")
    write_video(video_path, samples / 32767.0, 16000, index_frames(75), fps=25, audio_codec=codec)
    assert torch.equal(load_clip(video_path, 16000), load_clip(wav_path, 16000))
    assert torch.equal(load_clip(video_path, 16000, 1.25, 2.5), load_clip(wav_path, 16000, 1.25, 2.5))
    assert torch.equal(load_clip(video_path, 8000), load_clip(wav_path, 8000))  # the same resampling


def test_the_frames_returned_are_the_ones_shown_at_the_times_asked(tmp_path):
    path = str(tmp_path / "clip.mp4")
    write_video(path, np.zeros(16000 * 4, np.float32), 16000, index_frames(100), fps=25, audio_codec="aac")
    frames = read_video_frames(path, [0.0, 0.5, 1.02, 2.5, 3.99])
    assert frames.dtype == torch.uint8 and frames.shape == (5, 3, 48, 48)
    assert frame_indices(frames) == [0, 12, 25, 62, 99]


def test_epic_segments_read_from_the_long_video_equal_the_extracted_audio(tmp_path, decoded_samples):
    import speechbrain_datar.dataio.decoding as decoding

    folder = make_epic_kitchens_like(str(tmp_path / "epic"), media="both")
    with open(os.path.join(folder, "annotations", "EPIC_100_train.csv")) as f:
        rows = [line.split(",") for line in f.read().splitlines()[1:]]
    starts = [(row[2], float(row[4].split(":")[-1]) + 60 * int(row[4].split(":")[1])) for row in rows]
    decoded = decoded_samples
    counts = []
    for video_id, start in (starts[0], starts[-2]):
        wav_file = os.path.join(folder, "audio", f"{video_id}.wav")
        mp4_file = os.path.join(folder, video_id.split("_")[0], "videos", f"{video_id}.MP4")
        decoded.clear()
        assert torch.equal(
            load_clip(mp4_file, 16000, start, start + 1.0), load_clip(wav_file, 16000, start, start + 1.0)
        )
        counts.append(sum(decoded))
    assert starts[-2][1] > 20 * starts[0][1] or starts[0][1] < 2.0
    # a segment in the first minute is decoded from the file's start (exact for every codec), so a read
    # decodes at most that minute and the segment (tests/unit/dataio/test_media.py: later segments seek)
    assert min(counts) > 0
    assert max(counts) / 16000 <= min(decoding.ANCHOR_SECONDS, starts[-2][1]) + 1.0 + 2 * 4608 / 16000


def test_frames_follow_the_audio_span_in_the_data_pipeline(tmp_path):
    from speechbrain_datar.dataio.pipelines import build_datasets

    path = str(tmp_path / "clip.mp4")
    write_video(path, 0.1 * np.ones(16000 * 4, np.float32), 16000, index_frames(100), fps=25, audio_codec="flac")
    manifest = tmp_path / "train.json"
    manifest.write_text(
        json.dumps(
            {
                "c": {
                    "path": path,
                    "start": None,
                    "stop": None,
                    "duration": 4.0,
                    "label": "a",
                    "frames_folder": None,
                    "fps": None,
                    "frame_offset": 0.0,
                }
            }
        )
    )
    from speechbrain.dataio.encoder import CategoricalEncoder

    labels = CategoricalEncoder()
    labels.update_from_iterable(["a"])
    frames = {"n_frames": 4, "size": 16, "sampling": "uniform", "stride": 1, "eval_crops": 3}
    evaluation = build_datasets({"test": str(manifest)}, {"label": labels}, 16000, 2.0, frames)["test"][0]
    assert evaluation["frames"].shape == (3, 4, 3, 16, 16) and evaluation["sig"].shape == (64000,)
    # evaluation: 3 crops of 2 s (at 0, 1 and 2 s), each with the centres of its four 0.5 s parts
    assert evaluation["crop_starts"].tolist() == [0.0, 1.0, 2.0]
    assert [frame_indices(crop) for crop in evaluation["frames"]] == [
        [6, 18, 31, 43],
        [31, 43, 56, 68],
        [56, 68, 81, 93],
    ]
    torch.manual_seed(3)
    training = build_datasets({"train": str(manifest)}, {"label": labels}, 16000, 2.0, frames)["train"][0]
    assert training["sig"].shape == (32000,)  # a 2 s crop; its 4 frames lie inside it, 0.5 s apart
    assert set(np.diff(frame_indices(training["frames"])).tolist()) <= {12, 13}


def test_epic_frames_come_from_the_video_or_from_the_extracted_frames_alike(tmp_path):
    from epic_kitchens_prepare import prepare_epic_kitchens
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_datar.dataio.pipelines import build_datasets
    from speechbrain_datar.dataio.prepare import prepare_dataset

    epic = make_epic_kitchens_like(str(tmp_path / "epic"), media="video", frame_dumps=True)
    save = tmp_path / "save"
    prepare_dataset(
        prepare_epic_kitchens,
        str(save),
        dataset_options={"data_folder": epic, "need_video": True},
        valid_ratio=0.0,
        seed=1,
    )
    test = json.load(open(save / "test.json"))
    assert all(e["frames_folder"].endswith(os.path.join("rgb_frames", e["video_id"])) for e in test.values())
    encoders = {}
    for key in ("verb", "noun"):
        encoders[key] = CategoricalEncoder()
        encoders[key].update_from_iterable(sorted({e[key] for e in test.values()}))
    frames = {"n_frames": 6, "size": 16, "sampling": "consecutive", "stride": 1, "eval_crops": 1}
    from_dumps = build_datasets({"test": str(save / "test.json")}, encoders, 16000, None, frames)["test"]
    no_dumps = {k: dict(e, frames_folder=None) for k, e in test.items()}
    (save / "from_video.json").write_text(json.dumps(no_dumps))
    from_video = build_datasets({"test": str(save / "from_video.json")}, encoders, 16000, None, frames)["test"]
    for dumped, decoded in zip(from_dumps, from_video):
        indices = frame_indices(dumped["frames"][0])
        assert np.all(np.diff(indices) == 1)  # consecutive frames
        assert indices == frame_indices(decoded["frames"][0])  # frame_0000000001.jpg is the video's first frame
