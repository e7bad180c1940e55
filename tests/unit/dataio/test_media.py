"""Real media: one timeline for every read path, lossy codecs included, and downloads that are truncated,
odd or hostile.

The lossy files are made here with the encoders in PyAV's wheel (AAC, MP3, Vorbis, Opus) and libsndfile's.
Tolerances: a span read by seeking equals the same span of the whole-file read exactly (the same decoded
samples), except Opus, whose decoder keeps filter state that a pre-roll brings back to within float
round-off, not to the bit (1e-6; measured 3e-8); at the model's rate, a segment is resampled alone with a margin and equals the whole file's resampling to float
round-off (1e-5; measured 2.4e-7). FFmpeg's AAC encoder fills noise-like bands with noise substitution (PNS)
by default, and the decoder's noise generator depends on what it decoded before: seeks in such files are
exact only after the first minute's decode from the start (``decoding``'s docstring), so the seek tests
encode AAC without PNS.
"""

import json
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile
import torch

import speechbrain_datar.dataio.decoding as decoding
from speechbrain_datar.dataio.audio import inspect_clip, load_clip
from speechbrain_datar.dataio.decoding import open_audio
from speechbrain_datar.dataio.problems import ClipProblem
from speechbrain_datar.dataio.streaming import StreamedAudio
from speechbrain_datar.dataio.synthetic import write_video
from speechbrain_datar.dataio.video import read_video_frames
from speechbrain_datar.testing.hostile_media import (
    make_huge_frame_video,
    make_stride_zero_checkpoint,
    make_truncated_download,
    make_wav,
    make_zip_bomb_checkpoint,
)

#: name -> (encoder, container, rate, channels, encoder options)
CONTAINERS = {
    "AAC in mp4": ("aac", ".mp4", 44100, 1, {"aac_pns": "0"}),
    "MP3 in mp4": ("libmp3lame", ".mp4", 44100, 1, {}),
    "Vorbis in webm": ("vorbis", ".webm", 48000, 2, {}),
    "Opus in webm": ("libopus", ".webm", 48000, 1, {}),
    "FLAC in mkv": ("flac", ".mkv", 48000, 1, {}),
    "AAC in mkv": ("aac", ".mkv", 44100, 2, {"aac_pns": "0"}),
}
#: name -> (extension, libsndfile format, subtype)
AUDIO_FILES = {
    "Vorbis in ogg": (".ogg", "OGG", "VORBIS"),
    "Opus in ogg": (".opus", "OGG", "OPUS"),
    "MP3": (".mp3", "MP3", "MPEG_LAYER_III"),
    "FLAC": (".flac", "FLAC", "PCM_16"),
}


def sound(seconds, rate, channels=1, seed=0):
    """Noise whose level and colour change, over a tone that comes and goes: every frame differs."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wav = (
        0.15 * rng.standard_normal(t.shape) * (1.1 + np.sin(t * 1.3))
        + 0.3 * np.sin(2 * np.pi * 523 * t) * (np.sin(t * 2.1) > 0)
    ) / 2.5
    wav = np.stack([wav, 0.6 * wav[::-1]], axis=1) if channels == 2 else wav
    return wav.astype(np.float32)


def write_media(folder, name, seconds, rate=None, **options):
    """A file of ``seconds`` of ``sound`` in the format ``name`` (a key of ``CONTAINERS`` or ``AUDIO_FILES``)."""
    if name in AUDIO_FILES:
        ext, file_format, subtype = AUDIO_FILES[name]
        rate = rate or (48000 if subtype == "OPUS" else 44100)
        path = str(folder / f"clip{ext}")
        soundfile.write(path, sound(seconds, rate, 2), rate, format=file_format, subtype=subtype)
        return path
    codec, ext, default_rate, channels, codec_options = CONTAINERS[name]
    path = str(folder / f"clip{ext}")
    write_video(
        path,
        sound(seconds, rate or default_rate, channels),
        rate or default_rate,
        None,
        audio_codec=codec,
        audio_options=codec_options,
        **options,
    )
    return path


def whole_file(path):
    with open_audio(path) as source:
        return source.read(), source.sample_rate


def span(path, first, count):
    with open_audio(path) as source:
        return source.read(first, first + count)


@pytest.fixture
def short_anchor(monkeypatch):
    """Reads seek after 1.5 s (and Matroska's count restarts every 1.5 s): the seek paths, on short files."""
    monkeypatch.setattr(decoding, "ANCHOR_SECONDS", 1.5)


@pytest.mark.parametrize("name", list(CONTAINERS) + list(AUDIO_FILES))
def test_a_span_read_by_seeking_equals_the_same_span_of_the_whole_file(tmp_path, short_anchor, name):
    path = write_media(tmp_path, name, 6.0)
    whole, rate = whole_file(path)
    anchor = int(1.5 * rate)
    for first in (0, 7, 700, anchor - 1, anchor, anchor + 3, int(2.3456 * rate), int(4.5 * rate), whole.shape[1] - 50):
        part = span(path, first, int(0.7 * rate))
        expected = whole[:, first : first + int(0.7 * rate)]
        assert part.shape == expected.shape, (name, first)
        if name.startswith("Opus"):
            np.testing.assert_allclose(part, expected, atol=1e-6, rtol=0)
        else:
            assert np.array_equal(part, expected), (name, first, np.abs(part - expected).max())
    # at the model's rate: segments, and a stream whose blocks cut the file anywhere
    resampled = load_clip(path, 16000)
    for start in (0.0, 0.0004, 1.4999, 2.3456, 5.1):
        segment = load_clip(path, 16000, start, start + 0.7)
        first = int(round(start * 16000))
        torch.testing.assert_close(segment, resampled[first : first + segment.shape[0]], atol=1e-5, rtol=0)
    for block in (1.0, 7.0):
        stream = StreamedAudio(path, 16000, block_seconds=block)
        assert stream.n_samples == resampled.shape[0]
        pieces = [stream.read(first, first + 2500)[0] for first in range(0, stream.n_samples, 2500)]
        assert torch.equal(torch.cat(pieces)[: stream.n_samples], resampled), (name, block)


@pytest.mark.parametrize("name", ["Vorbis in webm", "AAC in mp4"])
def test_reads_after_the_first_minute_seek_and_equal_the_whole_file(tmp_path, decoded_samples, name):
    path = write_media(tmp_path, name, 63.0, rate=16000)
    whole, rate = whole_file(path)
    decoded = decoded_samples
    for seconds in (59.99, 60.0, 60.02, 61.5):
        decoded.clear()
        part = span(path, int(seconds * rate), rate)
        assert np.array_equal(part, whole[:, int(seconds * rate) : int(seconds * rate) + rate]), seconds
        if seconds > 60.5 and name.endswith("mp4"):  # a seek: the pre-roll and the span, not the minute before
            # (+ one frame of look-ahead: a frame's timestamp is judged with the next one's)
            assert sum(decoded) <= (decoding.PREROLL_SECONDS + 1.0) * rate + 4 * max(decoded)
        elif seconds > 60.5:  # Matroska: from the minute's anchor, through the seek point its index gives
            assert sum(decoded) < 15 * rate


@pytest.mark.parametrize("name", ["AAC in mp4", "MP3 in mp4", "Opus in webm"])
def test_a_timestamp_gap_is_silence_in_every_read_path(tmp_path, short_anchor, name):
    gap_file = write_media(tmp_path, name, 4.0, audio_gap=0.155)
    whole, rate = whole_file(gap_file)
    with av.open(gap_file) as container:
        first_frame = next(container.decode(audio=0)).samples
    gap = int(round(0.155 * rate))
    if CONTAINERS[name][1] == ".mp4":  # sample-exact timestamps: the gap is exactly where the packets say
        (tmp_path / "plain").mkdir()
        plain, _ = whole_file(write_media(tmp_path / "plain", name, 4.0))
        assert whole.shape[1] == plain.shape[1] + gap
        assert not whole[:, first_frame : first_frame + gap].any()
        assert np.array_equal(whole[:, first_frame + gap :], plain[:, first_frame:])
    for first in (first_frame - 10, first_frame + gap // 2, int(1.6 * rate), int(3.0 * rate)):
        assert np.array_equal(span(gap_file, first, rate // 2), whole[:, first : first + rate // 2])
    resampled = load_clip(gap_file, 16000)
    for block in (1.0, 7.0, 30.0):
        stream = StreamedAudio(gap_file, 16000, block_seconds=block)
        assert torch.equal(stream.read(0, stream.n_samples)[0], resampled)


@pytest.mark.parametrize("name", ["Vorbis in webm", "AAC in mp4"])
def test_classify_file_does_not_depend_on_the_block_size(micro_audio_classifier, tmp_path, name):
    path = write_media(tmp_path, name, 23.0)
    results = [micro_audio_classifier.classify_file(path, block_seconds=block) for block in (1.0, 7.0, 30.0)]
    assert all(torch.equal(result[0], results[0][0]) and result[3] == results[0][3] for result in results)


def test_the_exported_model_resamples_odd_rates_in_speechbrains_encoder_classifier(micro_audio_classifier, tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier

    path = make_wav(str(tmp_path / "odd.wav"), 44101, 44101 * 2)
    model = EncoderClassifier.from_hparams(source=micro_audio_classifier.exported_folder, savedir=str(tmp_path / "sb"))
    assert model.load_audio(path).shape == (32000,)
    with pytest.raises(ValueError, match="1 Hz is outside"):
        model.load_audio(make_wav(str(tmp_path / "one_hz.wav"), 1, 4000))


@pytest.mark.parametrize("kind", ["mp4 with picture", "flac"])
def test_a_truncated_download_is_counted_and_a_read_past_its_end_does_not_crash(tmp_path, kind):
    if kind == "flac":
        path = str(tmp_path / "cut.flac")
        soundfile.write(path, sound(14.0, 16000), 16000)
        content = open(path, "rb").read()
        open(path, "wb").write(content[: int(len(content) * 0.6)])
    else:
        path = make_truncated_download(str(tmp_path / "cut.mp4"))
    with pytest.raises(ClipProblem, match=r"truncated: .*header says 14.00 s, [0-9]+\.\d\d s decode") as problem:
        inspect_clip(path, need_video=kind != "flac")
    assert problem.value.reason == "truncated"
    decodable = float(str(problem.value).split(", ")[1].split(" s")[0])
    crop = load_clip(path, 16000, decodable - 1.0, decodable + 3.0)  # as a training crop reads it
    assert crop.shape == (64000,) and crop[:8000].abs().max() > 0 and not crop[24000:].any()
    assert StreamedAudio(path, 16000).duration == pytest.approx(decodable, abs=0.05)


def test_odd_and_absurd_sample_rates(tmp_path):
    odd = make_wav(str(tmp_path / "odd.wav"), 44101, 44101)
    assert inspect_clip(odd)["duration"] == 1.0 and load_clip(odd, 16000).shape == (16000,)
    for rate in (1, 9_999_991):
        with pytest.raises(ClipProblem, match=f"unsupported_rate: .*{rate} Hz is outside 1000-768000 Hz"):
            inspect_clip(make_wav(str(tmp_path / f"rate{rate}.wav"), rate, 4000))


def test_pictures_are_scaled_as_they_are_decoded_and_huge_ones_refused(tmp_path):
    path = str(tmp_path / "clip.mp4")
    frames = np.broadcast_to(np.arange(20, dtype=np.uint8)[:, None, None, None] * 10, (20, 90, 160, 3))
    write_video(path, sound(2.0, 16000), 16000, np.ascontiguousarray(frames), fps=10)
    assert read_video_frames(path, [0.0, 1.05], short_side=45).shape == (2, 3, 45, 80)
    assert read_video_frames(path, [0.0], short_side=400).shape == (1, 3, 90, 160)  # never enlarged
    huge = make_huge_frame_video(str(tmp_path / "huge.mp4"), 4100)
    with pytest.raises(ClipProblem, match="frame_too_large: .*4100x4100"):
        inspect_clip(huge, need_video=True)
    with pytest.raises(ClipProblem, match="frame_too_large"):
        read_video_frames(huge, [0.0], short_side=64)
    assert inspect_clip(huge)["duration"] > 0.9  # a recipe that reads sound only never decodes the picture


def test_a_webm_without_a_duration_in_its_header_is_read(tmp_path):
    path = write_media(tmp_path, "Vorbis in webm", 3.0, seekable=False)
    with av.open(path) as container:
        assert container.duration is None
    assert inspect_clip(path)["duration"] == pytest.approx(3.0, abs=0.03)
    assert StreamedAudio(path, 16000).n_samples == load_clip(path, 16000).shape[0]


@pytest.mark.parametrize("name", ["AAC in mp4", "Opus in webm"])
def test_bit_flipped_files_give_a_counted_reason_never_another_error(tmp_path, name):
    path = str(tmp_path / f"clip{CONTAINERS[name][1]}")
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    codec, _, rate, channels, options = CONTAINERS[name]
    write_video(
        path,
        sound(2.0, rate, channels),
        rate,
        frames,
        fps=5,
        audio_codec=codec,
        audio_options=options,
        video_codec="libvpx-vp9" if path.endswith(".webm") else "libx264",
    )
    content = bytearray(open(path, "rb").read())
    rng = np.random.default_rng(0)
    for trial in range(40):
        damaged = bytearray(content)
        for position in rng.integers(0, len(content), size=1 + trial % 4):
            damaged[position] ^= 1 << int(rng.integers(0, 8))
        broken = str(tmp_path / f"flipped{trial}{CONTAINERS[name][1]}")
        open(broken, "wb").write(damaged)
        for read in (lambda p=broken: inspect_clip(p, need_video=True), lambda p=broken: load_clip(p, 16000, 0.5, 1.5)):
            try:
                read()
            except ClipProblem:
                pass


def test_hostile_inputs_stay_under_a_gigabyte_and_end_in_one_line(tmp_path):
    inputs = [
        ("load_clip", make_wav(str(tmp_path / "rate44101.wav"), 44101, 44101)),
        ("inspect_clip", make_wav(str(tmp_path / "rate1.wav"), 1, 4000)),
        ("inspect_clip", make_wav(str(tmp_path / "rate9999991.wav"), 9_999_991, 4000)),
        ("inspect_clip", make_truncated_download(str(tmp_path / "truncated.mp4"))),
        ("read_past_the_end", str(tmp_path / "truncated.mp4")),
        ("read_frames", make_huge_frame_video(str(tmp_path / "huge.mp4"), 4100)),
        ("init_from", make_stride_zero_checkpoint(str(tmp_path / "stride0.pth"))),
        ("init_from", make_zip_bomb_checkpoint(str(tmp_path / "zipbomb.pth"), megabytes=64)),
    ]
    command = [sys.executable, "-m", "speechbrain_datar.testing.hostile_media"] + [f"{k}={p}" for k, p in inputs]
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    results = [json.loads(line) for line in lines]
    assert len(results) == len(inputs)
    for result in results:
        assert result["peak_mib"] < 1024, result
        assert "\n" not in result["outcome"]
    outcomes = [result["outcome"] for result in results]
    assert outcomes[0] == "(16000,) samples" and outcomes[4] == "(64000,) samples"
    assert [o.split(":")[1].strip() for o in outcomes[1:4]] == ["unsupported_rate", "unsupported_rate", "truncated"]
    assert "frame_too_large" in outcomes[5]
    assert "declares (30000000, 3, 4, 4)" in outcomes[6] and "compressed" in outcomes[7]
