"""Damaged timelines: a lone timestamp outlier is no gap, a jump of hours is no silence, a huge first timestamp
needs no recursion; reads stay bounded by the file's sound."""

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from speechbrain_datar.dataio.decoding import open_audio
from speechbrain_datar.dataio.synthetic import write_video

RATE = 44100


def tone(seconds=3.0, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.7 * t)).astype(np.float32)
    return np.stack([mono, mono], 1)


def decoder_output(path):
    """What FFmpeg's decoder gives, frame after frame, and the first frame's time in samples (from the start)."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        origin = (container.start_time or 0) / av.time_base
        frames, first = [], None
        for frame in container.decode(stream):
            if first is None:
                first = (frame.pts * float(stream.time_base) - origin) * stream.rate
            frames.append(frame.to_ndarray())
    return np.concatenate(frames, axis=1), int(round(first))


def test_lone_outliers_one_block_ahead_are_no_gaps_and_the_read_is_the_decoders_output(tmp_path):
    path = str(tmp_path / "outliers.webm")
    # as in a real WebM/Vorbis file: now and then one packet's timestamp one block ahead, the next back on it
    write_video(path, tone(), RATE, None, audio_codec="vorbis", retime=lambda i, p: p.duration if i % 40 == 20 else 0)
    decoded, offset = decoder_output(path)
    with open_audio(path) as source:
        whole = source.read()
        assert source.discontinuities == 0
    assert whole.shape[1] == offset + decoded.shape[1]
    np.testing.assert_array_equal(whole[:, offset:], decoded)


def retimed(tmp_path, name, codec, shift):
    rate = 48000 if codec == "libopus" else RATE
    path = str(tmp_path / name)
    write_video(path, tone(2.0, rate), rate, None, audio_codec=codec, retime=shift)
    return path


TEN_HOURS = 36000.0
TIMELINE_CASES = {
    "m4a, 10 h jump": ("jump.m4a", "aac", lambda i, p: int(TEN_HOURS / p.time_base) if i >= 20 else 0),
    "mka, 10 h jump": ("jump.mka", "vorbis", lambda i, p: int(TEN_HOURS / p.time_base) if i >= 20 else 0),
    "webm, 10 h jump": ("jump.webm", "libopus", lambda i, p: int(TEN_HOURS / p.time_base) if i >= 20 else 0),
    "mka, 1 h jump": ("hour.mka", "vorbis", lambda i, p: int(3600 / p.time_base) if i >= 20 else 0),
    "webm, first timestamp 2^40": ("first.webm", "libopus", lambda i, p: 2**40),
    "mka, first timestamp 2^40": ("first.mka", "vorbis", lambda i, p: 2**40),
}


@pytest.mark.parametrize("case", sorted(TIMELINE_CASES))
def test_jumps_and_huge_timestamps_cost_neither_memory_nor_recursion(tmp_path, case):
    name, codec, shift = TIMELINE_CASES[case]
    path = retimed(tmp_path, name, codec, shift)
    assert os.path.getsize(path) < 40_000
    kinds = ("inspect_clip", "load_clip", "classify_stream")
    command = [sys.executable, "-m", "speechbrain_datar.testing.hostile_media"] + [f"{kind}={path}" for kind in kinds]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = [json.loads(line) for line in result.stdout.strip().splitlines()[-3:]]
    for kind, outcome in zip(kinds, outcomes):
        assert outcome["kind"] == kind and outcome["peak_mib"] < 1024, outcome
        if kind == "inspect_clip":  # preparation leaves the clip out, with its reason
            assert outcome["outcome"].split(":")[1].strip() in ("bad_timestamps", "truncated"), outcome
        else:  # its sound, and no more: about 2 s, not hours of silence
            assert outcome["outcome"].startswith(("(3", "(2")), outcome
