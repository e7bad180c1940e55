"""Hostile inputs of the kinds real downloads and shared files bring, and a runner that measures them.

Each ``make_*`` writes one input; ``python -m speechbrain_datar.testing.hostile_media <kind>=<path> ...`` runs, in a fresh process,
the operations that the inputs used to blow up or crash, and prints one JSON line each: the outcome (what was
returned, or the one-line error) and the process's peak resident memory so far in MiB (torch included).
``benchmarks/hostile_inputs.py`` runs them at the sizes of the reports; ``tests/unit/dataio/test_media.py`` checks the
outcomes and the memory bound.
"""

import json
import os
import resource
import struct
import sys
import zipfile

import numpy as np

#: The checkout (the ESC-50 recipe's CSV reader is read from its recipes/ folder).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_wav(path, rate, samples, channels=1):
    """A 16-bit PCM WAV whose header declares ``rate`` (written by hand: libraries refuse absurd rates)."""
    data = (np.sin(np.arange(samples * channels) / 7.0) * 8000).astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * channels * 2,
        channels * 2,
        16,
        b"data",
        len(data),
    )
    with open(path, "wb") as f:
        f.write(header + data)
    return path


def make_truncated_download(path, seconds=14.0, keep=0.6, video=True, codec="aac"):
    """An mp4 (AAC sound, small H.264 picture) cut after ``keep`` of its bytes, as an interrupted download is;
    its header still says ``seconds``."""
    from speechbrain_datar.dataio.synthetic import write_video

    rate = 44100
    rng = np.random.default_rng(0)
    wav = (0.2 * rng.standard_normal(int(seconds * rate)) * np.sin(np.arange(int(seconds * rate)) / 9000.0)).astype(
        np.float32
    )
    frames = np.broadcast_to(
        (np.arange(int(seconds * 5)) % 200).astype(np.uint8)[:, None, None, None], (int(seconds * 5), 32, 32, 3)
    )
    write_video(
        path,
        wav,
        rate,
        frames if video else None,
        fps=5,
        audio_codec=codec,
        container_options={"movflags": "faststart"},
    )  # the index first, as streaming sites serve mp4
    with open(path, "rb") as f:
        content = f.read()
    with open(path, "wb") as f:
        f.write(content[: int(len(content) * keep)])
    return path


def make_huge_frame_video(path, side):
    """One black ``side x side`` H.264 frame with a second of sound: a small file that declares a huge picture."""
    import av

    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=1)
        video.width = video.height = side
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "51", "rc-lookahead": "0", "threads": "1"}
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        frame = av.VideoFrame(side, side, "yuv420p")
        for plane, value in zip(frame.planes, (16, 128, 128)):
            plane.update(bytes([value]) * plane.buffer_size)
        for packet in video.encode(frame):
            container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        tone = (0.3 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)[None]
        for first in range(0, 16000, 1024):
            chunk = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(tone[:, first : first + 1024]), format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts = 16000, first
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


def make_retimed(path, codec, retime, seconds=2.0):
    """A small file whose audio packets are re-timed by ``retime(index, packet)`` ticks (a jump, outliers, a huge
    first timestamp), encoded with PyAV's ``codec``."""
    from speechbrain_datar.dataio.synthetic import write_video

    rate = 48000 if codec == "libopus" else 44100
    t = np.arange(int(seconds * rate)) / rate
    wav = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_video(path, np.stack([wav, wav], 1), rate, None, audio_codec=codec, retime=retime)
    return path


def make_esc50_csv(path, line):
    """An ``esc50.csv`` of its header, one good row and ``line``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("filename,fold,target,category,esc10,src_file,take\n1-100-A-0.wav,1,0,dog,True,100,A\n")
        f.write(line + "\n")
    return path


def onnx_meta(**changes):
    """The ``onnx.json`` the export writes for a one-head DATAR (``python -m speechbrain_datar.export_onnx``), with
    ``changes``."""
    meta = dict(
        sample_rate=16000, n_fft=512, hop_samples=160, n_mels=128, window_frames=1001, hop_frames=501,
        block_frames=1001, graph_frames=1024, min_samples=400, outputs=["log_probs"], labels={"label": ["a", "b"]},
        encoder="DATAR", precision="fp32", opset=18, torch="2.11.0", multi_label=False, threshold=0.5,
    )  # fmt: skip
    return dict(meta, **changes)


def make_onnx_meta(folder, **changes):
    """``onnx_meta(**changes)`` written as ``folder/onnx.json``."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "onnx.json"), "w") as f:
        json.dump(onnx_meta(**changes), f)
    return os.path.join(folder, "onnx.json")


def make_stride_zero_checkpoint(path, rows=30_000_000):
    """A 2 KB checkpoint in DAT's layout whose patch kernel declares ``rows x 3 x 4 x 4`` over one element."""
    import torch

    torch.save({"model": {"patch_proj.0.weight": torch.zeros(1).expand(rows, 3, 4, 4)}}, path)
    return path


def make_zip_bomb_checkpoint(path, megabytes=3400):
    """A checkpoint whose tensor data is a deflated run of zeros: a few MB that unpack to ``megabytes``."""
    import torch

    torch.save({"model": {"patch_proj.0.weight": torch.zeros(4)}}, path + ".plain")
    with zipfile.ZipFile(path + ".plain") as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data/0"):
                zeros = b"\0" * (1 << 20)
                with bomb.open(info.filename, "w", force_zip64=True) as member:
                    for _ in range(megabytes):
                        member.write(zeros)
                continue
            bomb.writestr(info.filename, data)
    os.remove(path + ".plain")
    return path


def run(kind, path):
    """The operation ``kind`` on ``path``: its outcome (a value, or the one-line error)."""
    from speechbrain_datar.dataio.audio import inspect_clip, load_clip
    from speechbrain_datar.dataio.problems import ClipProblem
    from speechbrain_datar.errors import DataError

    try:
        if kind == "load_clip":
            return f"{tuple(load_clip(path, 16000).shape)} samples"
        if kind == "inspect_clip":
            return str(inspect_clip(path, need_video=path.endswith(".mp4")))
        if kind == "read_frames":
            from speechbrain_datar.dataio.video import read_video_frames

            return f"{tuple(read_video_frames(path, [0.0] * 8, short_side=64).shape)} frames"
        if kind == "init_from":
            from speechbrain_datar.lobes.models.datar import DATAR
            from speechbrain_datar.pretrained.checkpoint_import import init_from

            return init_from(DATAR("micro", n_mels=64, reference_frames=100), path).summary()
        if kind == "classify_stream":  # what StreamedAudio gives classify_file, block after block
            from speechbrain_datar.dataio.streaming import StreamedAudio

            stream = StreamedAudio(path, 16000, block_seconds=1.0)
            samples = sum(stream.read(first, first + 16000).shape[1] for first in range(0, stream.n_samples, 16000))
            return f"({stream.n_samples},) samples streamed ({samples} read)"
        if kind == "esc50_csv":
            import importlib.util

            spec = importlib.util.spec_from_file_location(
                "esc50_prepare", os.path.join(ROOT, "recipes", "ESC50", "esc50_prepare.py")
            )
            esc50_prepare = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(esc50_prepare)
            read_esc50_csv = esc50_prepare.read_esc50_csv

            from speechbrain_datar.dataio.report import SkipReport

            report = SkipReport("csv")
            rows = read_esc50_csv(path, report)
            return f"{len(rows)} rows, skipped {report.counts}"
        if kind == "onnx_meta":
            from speechbrain_datar.inference.onnx_runtime import read_onnx_meta

            return f"read: {sorted(read_onnx_meta(os.path.dirname(path)))[:3]}"
        if kind == "find_audio":
            from speechbrain_datar.dataio.audio import find_audio

            return str(find_audio(os.path.dirname(path), os.path.splitext(os.path.basename(path))[0]))
        if kind == "read_past_the_end":
            return f"{tuple(load_clip(path, 16000, 10.0, 14.0).shape)} samples"
        raise ValueError(f"unknown kind {kind}")
    except (ClipProblem, DataError) as error:
        return f"{type(error).__name__}: {error}"


def peak_resident_mib():
    """This process's own peak resident memory (``VmHWM``: ``ru_maxrss`` would also count the parent's peak,
    which a child inherits at fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: an upper bound


def main(argv):
    """Runs each ``<kind>=<path>`` and prints its outcome and peak memory as one JSON line."""
    for argument in argv:
        kind, path = argument.split("=", 1)
        outcome = run(kind, path)
        peak = peak_resident_mib()
        print(
            json.dumps({"kind": kind, "path": os.path.basename(path), "outcome": outcome, "peak_mib": round(peak, 1)}),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
