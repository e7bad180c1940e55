"""A recording's sound, decoded as it is read: hour-long files in bounded memory.

``StreamedAudio`` gives the samples of an audio file or of a video file's audio stream at the model's
rate, mono, for increasing sample ranges. It decodes the file once, front to back
(``decoding.open_audio``), and resamples with soxr's streaming resampler, whose output does not depend
on how the input is cut: the samples equal ``load_clip`` of the whole file, whatever ``block_seconds``.
It keeps only what the next read can still ask for (from the last read's first sample on) and one
block ahead of it.
"""

import math

import numpy as np
import soxr
import torch

from speechbrain_datar.dataio.audio import RESAMPLING_MARGIN_SECONDS, mono
from speechbrain_datar.dataio.decoding import open_audio, resampled_length, resampling_grid


class StreamedAudio:
    """Samples ``[first, last)`` of a file's sound at ``sample_rate``, decoded as the reads move forward.

    Arguments
    ---------
    path : str
        Audio file, or video file whose audio stream is read.
    sample_rate : int
        Rate of the samples returned.
    block_seconds : float
        Seconds decoded at once.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> from speechbrain_datar.dataio.audio import load_clip
    >>> path = os.path.join(tempfile.mkdtemp(), "long.wav")
    >>> soundfile.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 48000), 16000)
    >>> stream = StreamedAudio(path, 16000, block_seconds=1.0)
    >>> whole = load_clip(path, 16000)
    >>> stream.n_samples, torch.equal(stream.read(15000, 33000)[0], whole[15000:33000])
    (48000, True)
    >>> stream.read(47990, 48010)[0, 10:].abs().sum().item()  # zeros past the end
    0.0
    """

    def __init__(self, path, sample_rate, block_seconds=30.0):
        self.path, self.sample_rate = str(path), int(sample_rate)
        self.batch = 1
        with open_audio(self.path) as source:
            self.file_rate, file_samples = source.sample_rate, source.decoded_samples()
        self.n_samples = resampled_length(file_samples, self.file_rate, self.sample_rate)
        self.duration = self.n_samples / self.sample_rate
        self.block = max(1, int(block_seconds * self.file_rate))
        self._source = self._chunks = self._resampler = None
        self._kept, self._kept_first, self._decoded_end = torch.zeros(0), 0, 0

    def _start(self, first):
        """(Re)starts decoding so that output sample ``first`` comes out: from the file's start when
        ``first`` is early, else from a sample where both rates meet, ``RESAMPLING_MARGIN_SECONDS`` before it
        (then equal to the whole file's resampling to float round-off, not to the bit)."""
        self.close()
        step_in, step_out = resampling_grid(self.file_rate, self.sample_rate)
        margin = math.ceil(RESAMPLING_MARGIN_SECONDS * self.sample_rate / step_out) * step_out
        out_start = 0 if first <= 2 * margin else (first - margin) // step_out * step_out
        self._source = open_audio(self.path)
        self._chunks = self._source.chunks(out_start // step_out * step_in)
        self._resampler = (
            None
            if self.file_rate == self.sample_rate
            else soxr.ResampleStream(self.file_rate, self.sample_rate, 1, dtype="float32", quality="HQ")
        )
        self._kept, self._kept_first, self._decoded_end = torch.zeros(0), out_start, out_start

    def _decode_block(self):
        """Decodes about ``block_seconds`` more; returns False at the end of the file."""
        pieces, count = [], 0
        for _, samples in self._chunks:
            pieces.append(mono(samples))
            count += samples.shape[1]
            if count >= self.block:
                break
        last = count < self.block
        wav = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        if self._resampler is not None:
            wav = self._resampler.resample_chunk(wav, last=last)
        self._kept = torch.cat([self._kept, torch.from_numpy(np.ascontiguousarray(wav))])
        self._decoded_end = self._kept_first + self._kept.shape[0]
        return not last

    def read(self, first, last):
        """Samples ``[first, last)`` as ``[1, last - first]``, zero outside the file; what comes before
        ``first`` is let go."""
        out = torch.zeros(1, last - first)
        lo, hi = max(first, 0), min(last, self.n_samples)
        if hi <= lo:
            return out
        if self._chunks is None or lo < self._kept_first or lo > self._decoded_end + self.block:
            self._start(lo)
        while self._decoded_end < hi and self._decode_block():
            pass
        self._kept, self._kept_first = self._kept[lo - self._kept_first :], lo
        part = self._kept[: hi - lo]
        out[0, lo - first : lo - first + part.shape[0]] = part
        return out

    def close(self):
        """Releases the file (a later read opens it again)."""
        if self._source is not None:
            self._source.close()
        self._source = self._chunks = None
