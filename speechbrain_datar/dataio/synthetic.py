"""A small synthetic audio-event data set in the official layouts of the paper's benchmarks.

Six classes of distinguishable sound events (steady tones, rising and falling
chirps, band-limited noise bursts, click trains, warbling tones), each with
random pitch, timing, level and background noise, so that a model has to learn
their spectro-temporal shape. Used by the embedded default run and by the recipe
tests; nothing is downloaded.
"""

import csv
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


def synthesize_event(label, seconds, sample_rate, rng):
    """One clip of class ``label``: float32 waveform in [-1, 1].

    Example
    -------
    >>> wav = synthesize_event("rising chirp", 1.0, 16000, np.random.default_rng(0))
    >>> wav.shape, wav.dtype, bool(np.abs(wav).max() <= 1.0)
    ((16000,), dtype('float32'), True)
    """
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    onset = rng.uniform(0.0, 0.25) * seconds
    length = rng.uniform(0.6, 0.75) * seconds
    env = ((t >= onset) & (t < onset + length)).astype(np.float64)
    ramp = np.clip(np.minimum(t - onset, onset + length - t) / 0.01, 0, 1)
    env *= ramp
    f0 = rng.uniform(300.0, 1500.0)
    if label == "steady tone":
        signal = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)
    elif label in ("rising chirp", "falling chirp"):
        f1 = f0 * rng.uniform(3.0, 5.0)
        start, stop = (f0, f1) if label == "rising chirp" else (f1, f0)
        local = np.clip(t - onset, 0, length)
        phase = 2 * np.pi * (start * local + (stop - start) * local**2 / (2 * length))
        signal = np.sin(phase)
    elif label == "noise burst, band-limited":
        noise = rng.standard_normal(n)
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        centre = rng.uniform(1500.0, 4000.0)
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
    level = rng.uniform(0.2, 0.6)
    snr_db = rng.uniform(10.0, 25.0)
    event = level * signal * env
    noise = rng.standard_normal(n) * level * 10 ** (-snr_db / 20) / np.sqrt(2)
    wav = event + noise
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def _youtube_like_id(rng):
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(rng.choice(list(alphabet), 11))


def make_vggsound_like(
    folder,
    train_per_class=24,
    test_per_class=8,
    seconds=2.0,
    sample_rate=16000,
    classes=CLASSES,
    include_bad_clips=True,
    seed=0,
):
    """Writes ``folder/vggsound.csv`` and ``folder/audio/<id>_<start:06d>.wav``.

    The CSV has VGGSound's four columns and no header: YouTube id, start second,
    label, ``train``/``test``. With ``include_bad_clips``, four rows point to
    clips a real download also produces: missing, zero-byte, corrupt and silent.

    Returns
    -------
    dict
        ``csv``, ``audio_folder``, ``rows`` and ``bad`` (id -> problem).
    """
    rng = np.random.default_rng(seed)
    audio_folder = os.path.join(folder, "audio")
    os.makedirs(audio_folder, exist_ok=True)
    rows = []
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for label in classes:
            for _ in range(per_class):
                ytid, start = _youtube_like_id(rng), int(rng.integers(0, 300))
                wav = synthesize_event(label, seconds, sample_rate, rng)
                soundfile.write(os.path.join(audio_folder, f"{ytid}_{start:06d}.wav"), wav, sample_rate)
                rows.append((ytid, start, label, split))
    bad = {}
    if include_bad_clips:
        for problem, split in (("missing", "train"), ("empty", "train"), ("unreadable", "test"), ("silent", "train")):
            ytid, start = _youtube_like_id(rng), int(rng.integers(0, 300))
            path = os.path.join(audio_folder, f"{ytid}_{start:06d}.wav")
            if problem == "empty":
                open(path, "wb").close()
            elif problem == "unreadable":
                with open(path, "wb") as f:
                    f.write(b"RIFF" + rng.bytes(2000))
            elif problem == "silent":
                soundfile.write(path, np.zeros(int(seconds * sample_rate), dtype=np.float32), sample_rate)
            rows.append((ytid, start, classes[0], split))
            bad[ytid] = problem
    order = rng.permutation(len(rows))
    csv_path = os.path.join(folder, "vggsound.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        for i in order:
            writer.writerow(rows[i])
    return {"csv": csv_path, "audio_folder": audio_folder, "rows": len(rows), "bad": bad}
