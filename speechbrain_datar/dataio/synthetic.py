"""A small synthetic audio-event data set in the official layouts of the paper's benchmarks.

Six classes of distinguishable sound events (steady tones, rising and falling
chirps, band-limited noise bursts, click trains, warbling tones), each with
random pitch, timing, level and background noise, so that a model has to learn
their spectro-temporal shape. Used by the embedded default run and by the recipe
tests; nothing is downloaded.
"""

import contextlib
import csv
import json
import os
import string

import numpy as np
import soundfile

CLASSES = (
    "steady tone",
    "rising chirp",
    "falling chirp",
    "noise burst, band-limited",
    "click train",
    "warbling tone",
)


def synthesize_event(
    label, seconds, sample_rate, rng, pitch=(300.0, 1500.0), onset=None, length=None, level=None, snr_db=None
):
    """One clip of class ``label``: float32 waveform in [-1, 1].

    ``pitch`` is the range of the fundamental (tones, chirps, warbles) and, scaled
    by 2.5, of the noise band's centre. ``onset`` and ``length`` (seconds) and ``level``
    (peak amplitude) place the event, ``snr_db`` sets its background noise; by default they are drawn at
    random.

    Example
    -------
    >>> wav = synthesize_event("rising chirp", 1.0, 16000, np.random.default_rng(0))
    >>> wav.shape, wav.dtype, bool(np.abs(wav).max() <= 1.0)
    ((16000,), dtype('float32'), True)
    """
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    onset = rng.uniform(0.0, 0.25) * seconds if onset is None else onset
    length = rng.uniform(0.6, 0.75) * seconds if length is None else length
    env = ((t >= onset) & (t < onset + length)).astype(np.float64)
    ramp = np.clip(np.minimum(t - onset, onset + length - t) / 0.01, 0, 1)
    env *= ramp
    f0 = rng.uniform(*pitch)
    if label == "steady tone":
        signal = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)
    elif label in ("rising chirp", "falling chirp"):
        f1 = min(f0 * rng.uniform(3.0, 5.0), 0.45 * sample_rate)
        start, stop = (f0, f1) if label == "rising chirp" else (f1, f0)
        local = np.clip(t - onset, 0, length)
        phase = 2 * np.pi * (start * local + (stop - start) * local**2 / (2 * length))
        signal = np.sin(phase)
    elif label == "noise burst, band-limited":
        noise = rng.standard_normal(n)
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        centre = min(rng.uniform(*pitch) * 2.5, 0.4 * sample_rate)
        spectrum[np.abs(freqs - centre) > 600.0] = 0
        signal = np.fft.irfft(spectrum, n)
        signal /= np.abs(signal).max() + 1e-9
    elif label == "click train":
        rate = rng.uniform(6.0, 14.0)
        signal = np.zeros(n)
        decay = np.exp(-np.arange(int(0.004 * sample_rate)) / (0.0008 * sample_rate))
        for click_time in np.arange(onset, onset + length, 1.0 / rate):
            i = int(click_time * sample_rate)
            seg = signal[i : i + len(decay)]
            seg += decay[: len(seg)] * rng.choice([-1.0, 1.0])
    elif label == "warbling tone":
        rate, depth = rng.uniform(4.0, 8.0), rng.uniform(0.15, 0.3)
        phase = 2 * np.pi * f0 * (t + depth / (2 * np.pi * rate) * np.sin(2 * np.pi * rate * t))
        signal = np.sin(phase)
    else:
        raise ValueError(f"unknown synthetic class {label!r}")
    level = rng.uniform(0.2, 0.6) if level is None else level
    snr_db = rng.uniform(10.0, 25.0) if snr_db is None else snr_db
    event = level * signal * env
    noise = rng.standard_normal(n) * level * 10 ** (-snr_db / 20) / np.sqrt(2)
    wav = event + noise
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def write_video(
    path,
    wav,
    sample_rate,
    frames,
    fps=25,
    audio_codec="aac",
    video_codec="libx264",
    audio_options=None,
    audio_gap=0.0,
    seekable=True,
    container_options=None,
    retime=None,
):
    """Writes a video file with sound: ``wav`` (float in [-1, 1], ``[n]`` or ``[n, channels]``) and ``frames``
    (uint8 ``[n, H, W, 3]``).

    ``audio_codec`` ``None`` writes no audio stream and ``frames`` ``None`` no video
    stream. ``flac`` or ``pcm_s16le`` keep the audio exact (for tests); the lossy encoders
    of FFmpeg's wheel (``aac``, ``libmp3lame``, ``vorbis``, ``libopus``) take ``audio_options``
    (e.g. ``{"aac_pns": "0"}``). ``audio_gap`` seconds are inserted in the audio packets'
    timestamps after the frame at time 0, as some downloads have. ``seekable`` False writes
    as a live stream does (a WebM then has no duration in its header). ``container_options`` go to the
    muxer (``{"movflags": "faststart"}``: the mp4 index first, as served for streaming). ``retime(index,
    packet)`` returns the ticks (of ``packet.time_base``) to add to the timestamps of the audio packet
    ``index``: damaged timelines (jumps, outliers, a huge first timestamp) as real files have them.
    """
    import av

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if audio_codec is not None:
        pcm = np.clip(np.asarray(wav, dtype=np.float32), -1, 1)
        pcm = pcm[:, None] if pcm.ndim == 1 else pcm
        layout = "mono" if pcm.shape[1] == 1 else "stereo"
    with contextlib.ExitStack() as stack:
        target, container_format = path, None
        if not seekable:  # a file object: FFmpeg cannot guess the format from its name
            target = stack.enter_context(_Unseekable(path))
            container_format = {".mkv": "matroska", ".mov": "mov"}.get(
                os.path.splitext(path)[1], os.path.splitext(path)[1][1:]
            )
        container = stack.enter_context(av.open(target, "w", format=container_format, options=container_options or {}))
        video = audio = None
        if frames is not None:
            video = container.add_stream(video_codec, rate=fps)
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
            if video_codec == "libx264":
                video.options = {"crf": "10", "preset": "ultrafast"}
        if audio_codec is not None:
            options = dict(audio_options or {})
            if audio_codec == "vorbis":
                options.setdefault("strict", "experimental")  # FFmpeg's own Vorbis encoder (stereo only)
            audio = container.add_stream(audio_codec, rate=sample_rate, options=options)
            audio.layout = layout
        if video is not None:
            for image in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
        if audio is not None:
            if audio_codec in ("flac", "pcm_s16le"):
                samples, layout_format = np.round(pcm * 32767).astype(np.int16), "s16"
            else:
                samples, layout_format = pcm, "fltp"
            planar = layout_format.endswith("p")
            gap, muxed = None, [0]
            step = 1024
            for first in range(0, samples.shape[0], step):
                block = samples[first : first + step]
                block = block.T if planar else block.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format=layout_format, layout=layout)
                frame.sample_rate, frame.pts = sample_rate, first
                for packet in audio.encode(frame):
                    gap = _mux_audio(container, packet, audio_gap, gap, retime, muxed)
            for packet in audio.encode():
                gap = _mux_audio(container, packet, audio_gap, gap, retime, muxed)


def _mux_audio(container, packet, audio_gap, gap, retime=None, muxed=None):
    """Muxes an audio packet, shifted by ``audio_gap`` seconds if it comes after the frame at time 0, and by
    ``retime(index, packet)`` ticks."""
    if audio_gap and packet.pts is not None and packet.pts > 0:
        gap = gap if gap is not None else int(round(audio_gap / packet.time_base))
        packet.pts += gap
        packet.dts += gap
    if retime is not None and packet.pts is not None:
        shift = int(retime(muxed[0], packet))
        packet.pts += shift
        packet.dts += shift
    if muxed is not None:
        muxed[0] += 1
    container.mux(packet)
    return gap


class _Unseekable:
    """A file written front to back only, as a live stream or a pipe is."""

    def __init__(self, path):
        self.file = open(path, "wb")

    def write(self, data):
        """Writes through to the file."""
        return self.file.write(data)

    def seekable(self):
        """``False``: the stream a container is written to cannot seek (as a pipe)."""
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


#: Frame rate and size of generated videos: small, so that tests stay fast.
VIDEO_FPS, VIDEO_SIZE = 10, 48


def render_scene(scene, seconds, rng, fps=VIDEO_FPS, size=VIDEO_SIZE):
    """uint8 frames ``[n, size, size, 3]`` of a moving pattern: ``scene`` 0 a square crossing the picture,
    1 scrolling vertical stripes, 2 a pulsing disc (random colours and speeds)."""
    n = max(1, int(round(seconds * fps)))
    colour = rng.integers(80, 256, 3)
    background = rng.integers(0, 60, 3)
    speed = rng.uniform(0.5, 1.5)
    ys, xs = np.mgrid[0:size, 0:size]
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        t = i / fps * speed
        if scene == 0:
            x0 = int((t * size / 2) % size)
            inside = (np.abs(xs - x0) < size // 6) & (np.abs(ys - size // 2) < size // 6)
        elif scene == 1:
            inside = ((xs + int(t * size)) // 6) % 2 == 0
        else:
            inside = (xs - size / 2) ** 2 + (ys - size / 2) ** 2 < (size / 4 * (1.2 + np.sin(2 * np.pi * t))) ** 2
        frames[i] = np.where(inside[..., None], colour, background)
    return frames


def index_frames(n, size=VIDEO_SIZE):
    """uint8 frames ``[n, size, size, 3]`` whose colour encodes their index (red: index mod 30, green:
    index div 30), so that a test can tell which frames a decoder returned.

    Example
    -------
    >>> import torch
    >>> frames = index_frames(40)
    >>> frame_indices(torch.from_numpy(frames[[3, 35]]).permute(0, 3, 1, 2))
    [3, 35]
    """
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0], frames[i, ..., 1] = 10 + 8 * (i % 30), 10 + 8 * (i // 30)
    return frames


def frame_indices(frames):
    """The indices ``index_frames`` wrote into uint8 frames ``[n, 3, H, W]`` (read at their centres)."""
    centre = frames[:, :, frames.shape[2] // 2, frames.shape[3] // 2].int()
    return (((centre[:, 0] - 10) / 8).round() + 30 * ((centre[:, 1] - 10) / 8).round()).int().tolist()


def write_clip(stem, wav, sample_rate, rng, video=False, scene=0, audio_codec="aac"):
    """Writes a generated clip: ``stem.wav``, or with ``video`` ``stem.mp4`` with sound and a moving ``scene``.

    Returns the path.
    """
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    if not video:
        soundfile.write(stem + ".wav", wav, sample_rate)
        return stem + ".wav"
    frames = render_scene(scene, len(wav) / sample_rate, rng)
    write_video(stem + ".mp4", wav, sample_rate, frames, fps=VIDEO_FPS, audio_codec=audio_codec)
    return stem + ".mp4"


def _youtube_like_id(rng):
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(rng.choice(list(alphabet), 11))


#: An audio-visual set: each class is a sound and a scene (0 square, 1 stripes). Sound alone tells
#: tones from chirps, sight alone squares from stripes; only both tell the four classes apart.
AUDIO_VISUAL_CLASSES = {
    "tone, square": ("steady tone", 0),
    "tone, stripes": ("steady tone", 1),
    "chirp, square": ("rising chirp", 0),
    "chirp, stripes": ("rising chirp", 1),
}


def make_vggsound_like(
    folder,
    train_per_class=24,
    test_per_class=8,
    seconds=2.0,
    sample_rate=16000,
    classes=CLASSES,
    include_bad_clips=True,
    seed=0,
    video=False,
):
    """Writes ``folder/vggsound.csv`` and ``folder/audio/<id>_<start:06d>.wav`` (``.mp4`` with ``video``).

    The CSV has VGGSound's four columns and no header: YouTube id, start second,
    label, ``train``/``test``. With ``include_bad_clips``, rows point to clips a real
    download also produces: missing, zero-byte, corrupt and silent; with ``video``
    also a video without an audio stream, one without a video stream and one whose
    video stream stops early (the last two are fine for audio recipes). Videos show a moving scene: ``classes`` is a list of sound
    classes (scene ``i % 3`` for the ``i``-th) or a dict ``label -> (sound, scene)``
    such as ``AUDIO_VISUAL_CLASSES``.

    Returns
    -------
    dict
        ``csv``, ``audio_folder``, ``rows`` and ``bad`` (id -> problem).
    """
    rng = np.random.default_rng(seed)
    audio_folder = os.path.join(folder, "audio")
    os.makedirs(audio_folder, exist_ok=True)
    ext = ".mp4" if video else ".wav"
    rows = []
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for index, label in enumerate(classes):
            sound, scene = classes[label] if isinstance(classes, dict) else (label, index % 3)
            for _ in range(per_class):
                ytid, start = _youtube_like_id(rng), int(rng.integers(0, 300))
                wav = synthesize_event(sound, seconds, sample_rate, rng)
                write_clip(os.path.join(audio_folder, f"{ytid}_{start:06d}"), wav, sample_rate, rng, video, scene)
                rows.append((ytid, start, label, split))
    bad = {}
    kinds = [("missing", "train"), ("empty", "train"), ("unreadable", "test"), ("silent", "train")]
    kinds += [("no_audio_stream", "train"), ("no_video_stream", "train"), ("short_video", "train")] if video else []
    for problem, split in kinds if include_bad_clips else []:
        ytid, start = _youtube_like_id(rng), int(rng.integers(0, 300))
        stem = os.path.join(audio_folder, f"{ytid}_{start:06d}")
        first = list(classes)[0]
        tone = synthesize_event(classes[first][0] if isinstance(classes, dict) else first, seconds, sample_rate, rng)
        if problem == "empty":
            open(stem + ext, "wb").close()
        elif problem == "unreadable":
            with open(stem + ext, "wb") as f:
                f.write((b"RIFF" if not video else b"\x00\x00\x00\x20ftypisom") + rng.bytes(2000))
        elif problem == "silent":
            write_clip(stem, np.zeros(int(seconds * sample_rate), dtype=np.float32), sample_rate, rng, video)
        elif problem == "no_audio_stream":
            write_video(stem + ext, None, sample_rate, render_scene(0, seconds, rng), fps=VIDEO_FPS, audio_codec=None)
        elif problem == "no_video_stream":
            write_video(stem + ext, tone, sample_rate, None)
        elif problem == "short_video":  # frames for the first quarter only
            write_video(stem + ext, tone, sample_rate, render_scene(0, seconds / 4, rng), fps=VIDEO_FPS)
        rows.append((ytid, start, first, split))
        bad[ytid] = problem
    order = rng.permutation(len(rows))
    csv_path = os.path.join(folder, "vggsound.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        for i in order:
            writer.writerow(rows[i])
    return {"csv": csv_path, "audio_folder": audio_folder, "rows": len(rows), "bad": bad}


#: Kinetics-Sounds class names used for the generated set (a subset of the recipe's list).
KINETICS_SOUNDS_DEMO = {
    "playing organ": "steady tone",
    "playing trombone": "rising chirp",
    "playing bagpipes": "falling chirp",
    "shoveling snow": "noise burst, band-limited",
    "tap dancing": "click train",
    "playing violin": "warbling tone",
}


def make_kinetics_sounds_like(
    folder,
    train_per_class=5,
    test_per_class=2,
    seconds=1.0,
    sample_rate=16000,
    other_classes=("abseiling", "yoga"),
    seed=0,
    video=False,
):
    """Writes Kinetics-400-style annotations (``annotations/train.csv``, ``annotations/validate.csv``:
    ``label,youtube_id,time_start,time_end,split``) and ``audio/<id>_<start:06d>_<end:06d>.wav``
    (``.mp4`` clips with ``video``).

    Rows of ``other_classes`` (not in Kinetics-Sounds) are included too; one
    validation row has no audio file.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "annotations"), exist_ok=True)
    classes = list(KINETICS_SOUNDS_DEMO) + list(other_classes)
    for split, per_class, name in (("train", train_per_class, "train.csv"), ("val", test_per_class, "validate.csv")):
        rows = []
        for label in classes:
            event = KINETICS_SOUNDS_DEMO.get(label, "steady tone")
            for _ in range(per_class):
                ytid, start = _youtube_like_id(rng), int(rng.integers(0, 200))
                end = start + 10
                write_clip(
                    os.path.join(folder, "audio", f"{ytid}_{start:06d}_{end:06d}"),
                    synthesize_event(event, seconds, sample_rate, rng),
                    sample_rate,
                    rng,
                    video,
                    classes.index(label) % 3,
                )
                rows.append((label, ytid, start, end, split))
        if split == "val":
            rows.append((classes[0], _youtube_like_id(rng), 5, 15, split))  # never downloaded
        with open(os.path.join(folder, "annotations", name), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows(rows)
    return folder


#: ESC-50-style classes of the generated set: (category, target, in ESC-10, synthetic event).
ESC50_DEMO = (
    ("dog", 0, True, "click train"),
    ("rain", 10, True, "noise burst, band-limited"),
    ("rooster", 1, True, "rising chirp"),
    ("siren", 42, False, "warbling tone"),
    ("church_bells", 46, False, "steady tone"),
)


def make_esc50_like(folder, per_fold=2, seconds=1.0, sample_rate=44100, seed=0):
    """Writes ESC-50's official layout: ``meta/esc50.csv`` (``filename, fold, target, category, esc10, src_file,
    take``) and ``audio/<fold>-<source>-<take>-<target>.wav``, ``per_fold`` clips of each class in each of
    the 5 folds, three classes in ESC-10 and two outside it. One row names a clip that is not on disk and
    one row has a fold outside 1-5.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
    rows = []
    for fold in range(1, 6):
        for category, target, esc10, event in ESC50_DEMO:
            for take in "ABCDEFGH"[:per_fold]:
                source = int(rng.integers(10000, 999999))
                name = f"{fold}-{source}-{take}-{target}.wav"
                soundfile.write(
                    os.path.join(folder, "audio", name), synthesize_event(event, seconds, sample_rate, rng), sample_rate
                )
                rows.append([name, fold, target, category, esc10, source, take])
    rows.append(["3-424242-A-0.wav", 3, 0, "dog", True, 424242, "A"])  # in the CSV, never on disk
    rows.append(["9-424243-A-0.wav", 9, 0, "dog", True, 424243, "A"])  # a fold ESC-50 does not have
    os.makedirs(os.path.join(folder, "meta"), exist_ok=True)
    with open(os.path.join(folder, "meta", "esc50.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    return folder


#: EPIC-style classes of the generated set: official-looking ids that are not contiguous.
EPIC_VERBS = {
    0: ("take", "steady tone"),
    2: ("open", "rising chirp"),
    3: ("close", "falling chirp"),
    5: ("wash", "noise burst, band-limited"),
    8: ("cut", "warbling tone"),
}
EPIC_NOUNS = {1: ("tap", (250.0, 450.0)), 4: ("plate", (700.0, 1100.0)), 10: ("knife", (1600.0, 2400.0))}


def _timestamp(seconds):
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:05.2f}"


#: The columns of EPIC-KITCHENS-100's annotation files.
EPIC_COLUMNS = [
    "narration_id",
    "participant_id",
    "video_id",
    "narration_timestamp",
    "start_timestamp",
    "stop_timestamp",
    "start_frame",
    "stop_frame",
    "narration",
    "verb",
    "verb_class",
    "noun",
    "noun_class",
    "all_nouns",
    "all_noun_classes",
]


def epic_row(narration_id, video, start, stop, verb, noun, frames=None, verb_key=None):
    """One annotation row of EPIC_COLUMNS. ``start``/``stop``: seconds or timestamps as written
    (``"00:00:0x.50"`` for a malformed one); ``frames``: (start_frame, stop_frame), else 0 and 0."""
    start_text = start if isinstance(start, str) else _timestamp(start)
    stop_text = stop if isinstance(stop, str) else _timestamp(stop)
    verb_key = verb_key or EPIC_VERBS[verb][0]
    noun_key = EPIC_NOUNS[noun][0]
    return [
        narration_id,
        video.split("_")[0],
        video,
        start_text,
        start_text,
        stop_text,
        *(frames or (0, 0)),
        f"{verb_key} {noun_key}",
        verb_key,
        verb,
        noun_key,
        noun,
        f"['{noun_key}']",
        f"[{noun}]",
    ]


def _epic_problem_rows(video):
    """One validation segment of each problem preparation must report: a malformed timestamp, a stop before
    its start, a segment beyond the end of its file, a missing video, and a verb no training segment has."""
    rows = [
        epic_row(f"{video}_bad_ts", video, 1.0, 2.0, 0, 1),
        epic_row(f"{video}_bad_order", video, 3.0, 2.5, 0, 1),
        epic_row(f"{video}_beyond", video, 3540.0, 3541.0, 0, 1),
        epic_row("P09_99_0", "P09_99", 1.0, 2.0, 0, 1),
        epic_row(f"{video}_unseen_verb", video, 1.0, 1.5, 11, 1, verb_key="stir"),
    ]
    rows[0][4] = "00:00:0x.50"  # the start timestamp only: the narration's stays well formed
    return rows


def _write_epic_media(folder, video, wav, sample_rate, media, frame_dumps):
    """A video's sound as ``audio/<video>.wav`` and/or its ``.MP4`` (FLAC sound, frames that encode their
    index), and EPIC's frame dumps if asked."""
    samples = np.round(np.clip(wav, -1, 1) * 32767).astype(np.int16)  # one quantisation for both files
    wav = samples / 32767.0
    if media in ("audio", "both"):
        os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
        soundfile.write(os.path.join(folder, "audio", f"{video}.wav"), samples, sample_rate)
    participant = video.split("_")[0]
    # up to the frame shown at the very end, which the last segment's stop_frame names
    frames = index_frames(int(len(wav) / sample_rate * VIDEO_FPS) + 1)
    if media in ("video", "both"):
        write_video(
            os.path.join(folder, participant, "videos", f"{video}.MP4"),
            wav,
            sample_rate,
            frames,
            fps=VIDEO_FPS,
            audio_codec="flac",
        )
    if frame_dumps:
        from PIL import Image

        dumps = os.path.join(folder, participant, "rgb_frames", video)
        os.makedirs(dumps, exist_ok=True)
        for index, image in enumerate(frames, start=1):
            Image.fromarray(image).save(os.path.join(dumps, f"frame_{index:010d}.jpg"), quality=95)


def _write_epic_annotations(folder, train_rows, validation_rows):
    """The two annotation files and the verb and noun class lists (``id,key,instances,category``)."""
    ann = os.path.join(folder, "annotations")
    os.makedirs(ann, exist_ok=True)
    for name, content in (("EPIC_100_train.csv", train_rows), ("EPIC_100_validation.csv", validation_rows)):
        with open(os.path.join(ann, name), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(EPIC_COLUMNS)
            writer.writerows(content)
    for name, table in (
        ("EPIC_100_verb_classes.csv", {**{k: v[0] for k, v in EPIC_VERBS.items()}, 11: "stir"}),
        ("EPIC_100_noun_classes.csv", {k: v[0] for k, v in EPIC_NOUNS.items()}),
    ):
        with open(os.path.join(ann, name), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "key", "instances", "category"])
            for class_id, key in sorted(table.items()):
                writer.writerow([class_id, key, "[]", "synthetic"])


def make_epic_kitchens_like(
    folder,
    videos=("P01_01", "P02_03"),
    train_segments=36,
    validation_segments=12,
    sample_rate=16000,
    seed=0,
    media="audio",
    frame_dumps=False,
):
    """Writes EPIC-KITCHENS-100-style annotations and, per video, its audio (``media="audio"``), the video in
    the official layout ``<participant>/videos/<video_id>.MP4`` (``"video"``; FLAC sound, so that segments
    read from it equal those of the audio file), or both (``"both"``). Video frames encode their index
    (``index_frames``, at ``VIDEO_FPS``); with ``frame_dumps`` they are also written as EPIC's extracted
    frames, ``<participant>/rgb_frames/<video_id>/frame_0000000001.jpg`` onwards.

    ``annotations/EPIC_100_train.csv`` and ``EPIC_100_validation.csv`` have the
    official columns (``EPIC_COLUMNS``) with ``HH:MM:SS.ff``
    timestamps; ``EPIC_100_verb_classes.csv``/``EPIC_100_noun_classes.csv`` list
    ``id,key,instances,category``. Audio goes to ``audio/<video_id>.wav``. The
    validation file also holds one segment of each problem preparation must report
    (malformed timestamp, stop before start, beyond the end of its file, missing
    video) and one of a verb with no training segment.
    """
    rng = np.random.default_rng(seed)
    gap, seg_seconds = 0.3, 1.0
    verbs, nouns = sorted(EPIC_VERBS), sorted(EPIC_NOUNS)
    plan = {video: [] for video in videos}
    for i in range(train_segments + validation_segments):
        video = videos[i % len(videos)]
        verb, noun = verbs[i % len(verbs)], nouns[(i // len(verbs)) % len(nouns)]
        plan[video].append((i < train_segments, verb, noun))
    rows = {True: [], False: []}
    for video, segments in plan.items():
        cursor, audio = 0.5, []
        for is_train, verb, noun in segments:
            audio.append(np.zeros(int(round(gap * sample_rate)), dtype=np.float32))
            audio.append(
                synthesize_event(EPIC_VERBS[verb][1], seg_seconds, sample_rate, rng, pitch=EPIC_NOUNS[noun][1])
            )
            start = cursor + gap
            cursor = start + seg_seconds
            frames = (int(start * VIDEO_FPS) + 1, int(cursor * VIDEO_FPS) + 1)
            n = len(rows[True]) + len(rows[False])
            rows[is_train].append(epic_row(f"{video}_{n}", video, start, cursor, verb, noun, frames))
        wav = np.concatenate([np.zeros(int(0.5 * sample_rate), dtype=np.float32)] + audio)
        wav = wav + (0.003 * rng.standard_normal(len(wav))).astype(np.float32)
        _write_epic_media(folder, video, wav, sample_rate, media, frame_dumps)
    _write_epic_annotations(folder, rows[True], rows[False] + _epic_problem_rows(videos[0]))
    return folder


#: The multi-label set's classes: FSD50K-style names (no commas) and made-up MIDs.
TAGGING_CLASSES = {
    name.replace(",", "").replace(" ", "_").capitalize(): (name, f"/m/syn{i}") for i, name in enumerate(CLASSES)
}


def synthesize_scene(events, seconds, sample_rate, rng):
    """A clip holding several events: ``events`` is ``[(class name of CLASSES, onset, length, level)]``.

    Example
    -------
    >>> wav = synthesize_scene([("steady tone", 0.5, 1.0, 0.3), ("click train", 2.0, 1.0, 0.5)], 4.0, 16000,
    ...                        np.random.default_rng(0))
    >>> rms = lambda a, b: float(np.sqrt(np.mean(wav[a:b] ** 2)))
    >>> wav.shape, rms(0, 7000) < 0.2 * rms(9000, 20000)  # background before the first onset (0.5 s)
    ((64000,), True)
    """
    wav = 0.01 * rng.standard_normal(int(round(seconds * sample_rate)))  # one background for the scene
    for label, onset, length, level in events:
        wav += synthesize_event(label, seconds, sample_rate, rng, onset=onset, length=length, level=level, snr_db=80.0)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def make_fsd50k_like(
    folder, dev_clips=120, val_clips=24, eval_clips=48, seconds=4.0, sample_rate=16000, max_events=3, seed=0
):
    """A multi-label set in FSD50K's layout: 1 to ``max_events`` events of different classes per clip, at known
    times and levels (6 dB to 20 dB apart).

    Writes ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv``, ``FSD50K.dev_audio/`` and
    ``FSD50K.eval_audio/``, and ``events.json``: every clip's events (``label``, ``onset``,
    ``offset`` in seconds). Returns that dict.

    Example
    -------
    >>> import tempfile
    >>> events = make_fsd50k_like(tempfile.mkdtemp(), dev_clips=3, val_clips=1, eval_clips=2, seconds=1.0)
    >>> len(events), all(1 <= len(e) <= 3 for e in events.values())
    (6, True)
    """
    rng = np.random.default_rng(seed)
    names = list(TAGGING_CLASSES)
    truth = os.path.join(folder, "FSD50K.ground_truth")
    for sub in (truth, os.path.join(folder, "FSD50K.dev_audio"), os.path.join(folder, "FSD50K.eval_audio")):
        os.makedirs(sub, exist_ok=True)
    with open(os.path.join(truth, "vocabulary.csv"), "w", newline="") as f:
        csv.writer(f).writerows((i, name, TAGGING_CLASSES[name][1]) for i, name in enumerate(names))
    all_events, fname = {}, 100000
    rows = {"dev": [], "eval": []}
    for split, count in (("train", dev_clips), ("val", val_clips), ("eval", eval_clips)):
        for _ in range(count):
            fname += int(rng.integers(1, 50))
            chosen = rng.choice(len(names), size=int(rng.integers(1, max_events + 1)), replace=False)
            events = []
            for index in chosen:
                length = rng.uniform(0.25, 0.45) * seconds
                onset = rng.uniform(0.0, seconds - length)
                events.append(
                    (names[index], round(float(onset), 3), round(float(length), 3), float(rng.uniform(0.1, 0.7)))
                )
            wav = synthesize_scene(
                [(TAGGING_CLASSES[n][0], o, d, g) for n, o, d, g in events], seconds, sample_rate, rng
            )
            audio = "FSD50K.eval_audio" if split == "eval" else "FSD50K.dev_audio"
            soundfile.write(os.path.join(folder, audio, f"{fname}.wav"), wav, sample_rate)
            labels = sorted({n for n, *_ in events})
            row = [fname, ",".join(labels), ",".join(TAGGING_CLASSES[n][1] for n in labels)]
            rows["eval" if split == "eval" else "dev"].append(row + ([] if split == "eval" else [split]))
            all_events[str(fname)] = [dict(label=n, onset=o, offset=round(o + d, 3)) for n, o, d, _ in events]
    for name, header in (("dev", ["fname", "labels", "mids", "split"]), ("eval", ["fname", "labels", "mids"])):
        with open(os.path.join(truth, f"{name}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows[name])
    with open(os.path.join(folder, "events.json"), "w") as f:
        json.dump(all_events, f, indent=1)
    return all_events
