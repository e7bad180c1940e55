"""A recording's sound, decoded block by block as it is read: hour-long files in bounded memory.

``StreamedAudio`` gives the samples of an audio file or of a video file's audio
stream at the model's rate, mono, for increasing sample ranges, holding at most
two blocks. Each block is read with ``load_clip`` (audio files exactly, video
files by seeking); when the file has another rate, a block is read with a margin
on each side and resampled, and its edges are cut away, so its samples are those
of the whole file resampled at once (up to float round-off).
"""

import math

import torch

from speechbrain_datar.dataio.audio import audio_samples, load_clip


class StreamedAudio:
    """Samples ``[first, last)`` of a file's sound at ``sample_rate``, decoded a block at a time.

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
        self.file_rate, file_samples = audio_samples(self.path)
        self.n_samples = math.ceil(file_samples * self.sample_rate / self.file_rate)  # as resampling gives them
        self.duration = self.n_samples / self.sample_rate
        # Blocks start where a whole-file resampling has an output sample on an input sample.
        step = self.sample_rate // math.gcd(self.sample_rate, self.file_rate)
        self.block = max(step, int(block_seconds * self.sample_rate) // step * step)
        self.margin = 0 if self.file_rate == self.sample_rate else step * math.ceil(0.05 * self.sample_rate / step)
        self._blocks = {}

    def _read_block(self, index):
        first, last = index * self.block, min((index + 1) * self.block, self.n_samples)
        start, stop = max(0, first - self.margin), min(self.n_samples, last + self.margin)
        wav = load_clip(self.path, self.sample_rate, start / self.sample_rate if start else None,
                        stop / self.sample_rate if stop < self.n_samples else None)
        part = wav[first - start : first - start + (last - first)]
        if part.shape[0] < last - first:  # a decoder that gives a few samples fewer than the duration says
            part = torch.nn.functional.pad(part, (0, last - first - part.shape[0]))
        return part

    def read(self, first, last):
        """Samples ``[first, last)`` as ``[1, last - first]``, zero outside the file; earlier blocks are let go."""
        out = torch.zeros(1, last - first)
        lo, hi = max(first, 0), min(last, self.n_samples)
        if hi <= lo:
            return out
        needed = range(lo // self.block, (hi - 1) // self.block + 1)
        self._blocks = {k: v for k, v in self._blocks.items() if k in needed}
        for index in needed:
            if index not in self._blocks:
                self._blocks[index] = self._read_block(index)
            block_first = index * self.block
            a, b = max(lo, block_first), min(hi, block_first + self.block)
            out[0, a - first : b - first] = self._blocks[index][a - block_first : b - block_first]
        return out
