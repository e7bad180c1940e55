"""A file's sound on one timeline, for every read path: whole files, training crops, segments and streams.

``open_audio(path)`` gives a source whose ``chunks(first)`` yields the samples from ``first`` on, at the
file's own rate, contiguous and in order. Every reader of this package (``load_clip``, preparation's checks,
``StreamedAudio``) is built on it, so a span read by seeking equals the same span of a whole-file read.

- WAV and FLAC files are read with libsndfile (``soundfile``), exact at any sample.
- Everything else (ogg, opus, mp3, m4a; mp4, mkv, webm, mov, avi) is decoded with FFmpeg (PyAV). Sample positions follow the
  container's timestamps as FFmpeg presents them (edit lists and encoder priming applied), counted from
  the file's start time: a gap between packets is silence, overlapping packets are trimmed. Timestamps
  that agree with the running sample count within half a timestamp tick are taken as contiguous audio, and
  so is a frame whose timestamp alone disagrees while the next frame's agrees (a lone outlier is no gap).
  A jump of more than ``MAX_GAP_SECONDS`` (or silence beyond the sound decoded so far), or a first frame more
  than ``ANCHOR_SECONDS`` after the file's start, is damage, not silence: the sound goes on where it was, and
  the source counts a ``discontinuity``; reads of such a file are bounded by its sound, not by its timestamps.
  Matroska and WebM give times in milliseconds, coarser than a sample; there the count restarts from
  the timestamp of the first frame of every whole minute (``ANCHOR_SECONDS``), so that a read starting
  after a minute's anchor counts from the same frame as a whole-file read does.
- Lossy decoders need the frames before a seek point (AAC's and Vorbis' overlapping transforms, MP3's bit
  reservoir, Opus' filters). A read decodes from the file's start when it begins within the first
  ``ANCHOR_SECONDS``, else from ``PREROLL_SECONDS`` before its anchor (Matroska) or its first sample (other
  containers), and discards what precedes the span. Raw streams without an index (ADTS ``.aac``, ``.mp3``),
  where FFmpeg can only estimate where a seek lands, are always decoded from the start. Measured on files made with FFmpeg's encoders, a span
  read by seeking then equals the whole-file read exactly for AAC, MP3, Vorbis and FLAC, and to 3e-8 for
  Opus (its filters converge, not to the bit). One exception needs the read from the start: AAC noise
  substitution (PNS, FFmpeg's AAC encoder's default) fills noise-coded bands from a generator whose state
  depends on everything decoded before, so seeks in such a file can differ there (by up to 0.24 in a
  generated file's first seconds); reads in the first minute, which cover clips such as VGGSound's and
  Kinetics', never seek.

Header durations are claims: ``decoded_samples`` learns how many samples really decode, cheaply (the last
seconds), and a read past the real end returns what there is.
"""

import contextlib
import math
import os

import av
import numpy as np
import soundfile

from speechbrain_datar.dataio.problems import ClipProblem

#: Lossless audio files, read with libsndfile (exact at any sample); everything else goes through FFmpeg
#: (libsndfile's seeks in Ogg Vorbis miss by up to 0.44 in a file's last 5,000 samples, in MP3 by 1e-7).
SOUNDFILE_EXTENSIONS = (".wav", ".flac")
#: Sample rates outside this range are refused (``unsupported_rate``): a 1 Hz or a 10 MHz header is damage.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000
#: Decoded before a seek point and discarded: more than every lossy codec here needs to settle.
PREROLL_SECONDS = 0.5
#: Reads that start within this many seconds decode from the file's start (exact for every codec);
#: in Matroska/WebM the sample count restarts at each multiple of it.
ANCHOR_SECONDS = 60.0
#: Raw elementary streams (FFmpeg's demuxer names): no index and no stored timestamps, so FFmpeg estimates
#: where a seek lands from the bit rate. Reads from them decode from the start.
UNSEEKABLE_FORMATS = ("aac", "mp3", "ac3", "eac3")
#: Samples decoded at once from audio files.
BLOCK_SAMPLES = 1 << 16
#: A jump forward in the timestamps up to this long is silence (a dropout); a longer one, or one that would
#: make the silence more than the sound decoded so far, is a damaged timeline: the sound goes on without a gap.
MAX_GAP_SECONDS = 5.0
#: Fewer bits per second of claimed duration than any codec here needs: the header's duration is not believed.
MIN_BITS_PER_SECOND = 1000
#: Minutes a seeking read goes back to find its anchor frame before it decodes from the file's start.
MAX_MINUTES_BACK = 3


def open_audio(path):
    """The sound of an audio or video file, as a source of samples at the file's own rate.

    Raises ``ClipProblem``: ``missing``, ``empty``, ``unreadable``, ``no_audio_stream``, ``unsupported_rate``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> soundfile.write(path, np.ones((1000, 2), np.float32) * 0.5, 8000)
    >>> with open_audio(path) as source:
    ...     source.sample_rate, source.channels, source.read(990, 2000).shape
    (8000, 2, (2, 10))
    """
    if not os.path.isfile(path):
        raise ClipProblem("missing", path)
    if os.path.getsize(path) == 0:
        raise ClipProblem("empty", f"{path} has zero bytes")
    if os.path.splitext(path)[1].lower() in SOUNDFILE_EXTENSIONS:
        return SoundfileSource(path)
    return ContainerSource(path)


def unsupported_rate(rate):
    """Why a sample rate cannot be used (``None``: it can).

    Example
    -------
    >>> unsupported_rate(44101), unsupported_rate(9999991)
    (None, '9999991 Hz is outside 1000-768000 Hz')
    """
    if not rate or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return f"{rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
    return None


def check_rate(path, rate):
    """Refuses a sample rate outside ``[MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]`` as ``unsupported_rate``."""
    problem = unsupported_rate(rate)
    if problem:
        raise ClipProblem("unsupported_rate", f"{path}: {problem}")


class AudioSource:
    """What every source has: ``sample_rate``, ``channels``, ``header_samples`` (what the file claims, or
    ``None``), ``chunks(first)`` and the readers built on it."""

    path, sample_rate, channels, header_samples = None, None, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Releases the file."""

    def chunks(self, first=0):
        """``(position, samples [channels, n] float32)`` from sample ``first`` on, contiguous, to the end."""
        raise NotImplementedError

    def read(self, first=0, last=None):
        """Samples ``[first, last)`` (``last`` ``None``: to the end) as ``[channels, n]``; fewer when the
        sound ends before ``last``."""
        pieces = []
        for position, samples in self.chunks(first):
            if last is not None and position >= last:
                break
            pieces.append(samples if last is None else samples[:, : last - position])
        if not pieces:
            return np.zeros((self.channels, 0), np.float32)
        return np.concatenate(pieces, axis=1)

    def decoded_samples(self):
        """How many samples really decode (a truncated download decodes fewer than its header says)."""
        raise NotImplementedError


class SoundfileSource(AudioSource):
    """An audio file read with libsndfile: exact at any sample."""

    def __init__(self, path):
        self.path = path
        try:
            self.file = soundfile.SoundFile(path)
        except (soundfile.SoundFileError, OSError) as error:  # a bug of ours must not look like a bad file
            raise ClipProblem("unreadable", f"{path}: {error}") from None
        self.sample_rate, self.channels = self.file.samplerate, self.file.channels
        check_rate(path, self.sample_rate)
        self.header_samples = self.file.frames if self.file.frames >= 0 else None

    def close(self):
        """Closes the file."""
        self.file.close()

    def _reopen(self):
        """A fresh decoder: libsndfile's is unusable after an error."""
        self.file.close()
        self.file = soundfile.SoundFile(self.path)

    def chunks(self, first=0):
        """``(position, samples [channels, n] float32)`` from sample ``first`` on, contiguous, to the end."""
        self._reopen()
        if self.header_samples is not None and first > self.header_samples:
            return
        position = first
        for step in (BLOCK_SAMPLES, 1024, 1):
            # A truncated or damaged file: a read that meets the damage returns nothing, so the block is read
            # again in smaller steps, down to single samples, up to where decoding stops; the end then does
            # not depend on the block size or on where the read started.
            try:
                if step != BLOCK_SAMPLES:
                    self._reopen()
                self.file.seek(position)
                while True:
                    block = self.file.read(step, dtype="float32", always_2d=True)
                    if not len(block):
                        return
                    yield position, np.ascontiguousarray(block.T)
                    position += len(block)
            except soundfile.LibsndfileError:
                continue

    def decoded_samples(self):
        """How many samples really decode (a truncated download decodes fewer than its header says)."""
        claimed = self.header_samples or 0
        tail = max(0, claimed - self.sample_rate)
        end = tail
        for position, samples in self.chunks(tail):
            end = position + samples.shape[1]
        if end >= claimed or tail == 0:
            return end
        end = 0
        for position, samples in self.chunks(0):  # the tail did not decode: count from the start
            end = position + samples.shape[1]
        return end


class ContainerSource(AudioSource):
    """The first audio stream of a container, decoded with FFmpeg on the module's timeline."""

    def __init__(self, path):
        self.path = path
        self.container = None
        with self._ffmpeg_errors():
            self.container = open_container(path)
            if not self.container.streams.audio:
                raise ClipProblem("no_audio_stream", path)
            stream = self.container.streams.audio[0]
            self.sample_rate, self.channels = stream.rate, stream.channels
            check_rate(path, self.sample_rate)
            if not self.channels:
                raise ClipProblem("unreadable", f"{path}: its audio stream has no channels")
            start = self.container.start_time
            self.origin = start / av.time_base if start is not None else 0.0
            self.time_base = stream.time_base
            seconds = (
                self.container.duration / av.time_base
                if self.container.duration
                else (float(stream.duration * stream.time_base) if stream.duration else None)
            )
            self.header_samples = int(round(seconds * self.sample_rate)) if seconds else None
        ticks = float(self.time_base) * self.sample_rate
        self.coarse = ticks > 1.0 + 1e-9  # timestamps coarser than a sample (Matroska's milliseconds)
        self.seekable = not set(self.container.format.name.split(",")) & set(UNSEEKABLE_FORMATS)
        self.tolerance = ticks / 2 + 1.0
        self.anchor = int(round(ANCHOR_SECONDS * self.sample_rate))
        self._used = False
        #: Jumps in the timestamps taken as damage (not silence) by the reads so far.
        self.discontinuities = 0

    def close(self):
        """Closes the container."""
        if self.container is not None:
            self.container.close()
            self.container = None

    def believable_header(self):
        """Whether the header's duration fits the file's size (``believable_duration``)."""
        return believable_duration(self.path, (self.header_samples or 0) / self.sample_rate)

    @contextlib.contextmanager
    def _ffmpeg_errors(self):
        """FFmpeg's errors (``av.error.FFmpegError`` and its subclasses, ``PermissionError``, ``EOFError``) as ``ClipProblem``."""
        try:
            yield
        except av.error.FFmpegError as error:
            raise ClipProblem("unreadable", f"{self.path}: {error}") from None

    def _start_of(self, first, minutes_back=0):
        """Where decoding starts for a read from sample ``first`` (seconds; 0: the file's start), and the
        anchor (in samples) the count restarts from (``None``: counted from the decoding's first frame).
        ``minutes_back`` ``None``: from the file's start."""
        if first < self.anchor or not self.seekable or minutes_back is None:
            return 0.0, None
        if not self.coarse:
            return first / self.sample_rate - PREROLL_SECONDS, None
        anchor = (first // self.anchor - minutes_back) * self.anchor
        if anchor <= 0:
            return 0.0, None
        return anchor / self.sample_rate - PREROLL_SECONDS, anchor

    def _frames(self, seek_seconds):
        """``(exact position or None, samples)`` of each decoded frame, after seeking to ``seek_seconds``."""
        if self._used:  # every pass starts on a freshly opened file: no decoder state carries over
            self.close()
            with self._ffmpeg_errors():
                self.container = open_container(self.path)
        self._used = True
        stream = self.container.streams.audio[0]
        # Frames that are not float already are converted to packed float: one plane whatever the channel
        # count (PyAV's planar conversion reads past FFmpeg's eight inline planes, and a damaged AAC frame can
        # declare 29 channels).
        to_float, seconds_per_tick = av.AudioResampler(format="flt"), float(stream.time_base)
        try:
            if seek_seconds > 0:
                self.container.seek(int((seek_seconds + self.origin) / self.time_base), stream=stream, backward=True)
            for frame in self.container.decode(stream):
                if frame.layout.nb_channels != self.channels or frame.sample_rate != self.sample_rate:
                    continue  # a damaged frame (or a stream that changes layout): nothing this timeline can place
                if not frame.samples:
                    continue
                exact = None if frame.pts is None else (frame.pts * seconds_per_tick - self.origin) * self.sample_rate
                if frame.format.name == "fltp" and self.channels <= 8:  # the decoders' usual output: as it is
                    yield exact, frame.to_ndarray()
                    continue
                for converted in to_float.resample(frame):
                    if converted.samples:
                        yield exact, converted.to_ndarray().reshape(converted.samples, self.channels).T
                        exact = None if exact is None else exact + converted.samples
        except av.error.FFmpegError:
            return  # decoding stops where the file stops decoding (a truncated or damaged file)

    def _positioned(self, first):
        """``(position, samples)`` of the frames a read from ``first`` needs, placed on the timeline. A read that
        finds no frame between its anchor and its first sample goes back a minute, at most ``MAX_MINUTES_BACK``
        times, then decodes from the file's start (a loop, not a recursion: a huge timestamp costs passes, not
        stack)."""
        for minutes_back in [*range(MAX_MINUTES_BACK), None]:
            outcome = yield from self._pass(first, minutes_back)
            if outcome == "done":
                return

    def _pass(self, first, minutes_back):
        """One decoding pass of ``_positioned``; returns ``"back"`` when the anchor frame starts after ``first``."""
        seek_seconds, anchor = self._start_of(first, minutes_back)
        expected, next_anchor = None, (anchor if anchor is not None else self.anchor)
        shift, silence, decoded, last_end = 0.0, 0, 0, None
        max_gap = int(MAX_GAP_SECONDS * self.sample_rate)
        for (raw, samples), following in _with_next(self._frames(seek_seconds)):
            length = samples.shape[1]
            if raw is not None:
                last_end = raw + length if last_end is None else max(last_end, raw + length)
            if anchor is not None and (raw is None or raw < anchor):
                continue  # pre-roll before the anchor: decoded for the decoder's state, then dropped
            if anchor is not None and int(round(raw)) > first:
                return "back"  # the anchor frame starts after the read does
            anchor = None
            exact = None if raw is None else raw - shift
            near = expected is None or abs(exact - expected) <= max_gap if exact is not None else False
            if self.coarse and not shift and raw is not None and raw >= next_anchor and near:
                position = int(round(raw))  # a whole minute's first frame: the count restarts here
                next_anchor = (int(raw) // self.anchor + 1) * self.anchor
            elif expected is None:
                position = 0 if exact is None else int(round(exact))
                if seek_seconds == 0 and exact is not None and abs(exact) > self.anchor:
                    shift, position = raw, 0  # the first frame far from the file's start: a damaged timestamp
                    self.discontinuities += 1
            elif exact is None or abs(exact - expected) <= self.tolerance:
                position = expected
            elif following is not None and abs(following - shift - (expected + length)) <= self.tolerance:
                position = expected  # a lone outlier: the next frame's timestamp agrees with the count
            else:
                gap = int(round(exact)) - expected
                if -max_gap <= gap <= max_gap and silence + max(gap, 0) <= max_gap + decoded:
                    position = expected + gap  # a gap (silence) or an overlap in the timestamps
                    silence += max(gap, 0)
                else:
                    shift += exact - expected  # a jump: the sound goes on where it was
                    position = expected
                    self.discontinuities += 1
            expected = position + length
            decoded += length
            yield position, samples
        if anchor is not None and (last_end is None or last_end > first):
            return "back"  # no frame starts between the anchor and the read's first sample
        return "done"

    def chunks(self, first=0):
        """``(position, samples [channels, n] float32)`` from sample ``first`` on, contiguous, on the decoding
        timeline (gaps as silence, overlaps dropped)."""
        cursor, pending = first, None
        for position, samples in self._positioned(first):
            if pending is not None:
                # Where frames overlap, the later one wins: a span then depends on its own minute alone.
                yield from self._emit(cursor, pending[0], pending[1][:, : max(0, position - pending[0])])
                cursor = max(cursor, min(position, pending[0] + pending[1].shape[1]))
            pending = (position, samples)
        if pending is not None:
            yield from self._emit(cursor, *pending)

    def _emit(self, cursor, position, samples):
        """The part of a frame at or after ``cursor``, with silence before it where the timeline has a gap."""
        end = position + samples.shape[1]
        if end <= cursor:
            return
        if position > cursor:
            yield cursor, np.zeros((self.channels, position - cursor), np.float32)
            cursor = position
        yield cursor, samples[:, cursor - position :]

    def decoded_samples(self):
        """How many samples really decode (a truncated download decodes fewer than its header says)."""
        tail = max(0, (self.header_samples or 0) - 3 * self.sample_rate)
        end = None
        if tail >= self.anchor and self.believable_header():  # a long file: decode its last seconds only
            for position, samples in self.chunks(tail):
                end = position + samples.shape[1]
        if end is None:  # a short file, or a tail that does not decode (truncated): count from the start
            end = 0
            for position, samples in self.chunks(0):
                end = position + samples.shape[1]
        return end


def _with_next(frames):
    """``((exact, samples), next frame's exact)`` for each frame (``None`` after the last)."""
    previous = None
    for frame in frames:
        if previous is not None:
            yield previous, frame[0]
        previous = frame
    if previous is not None:
        yield previous, None


def believable_duration(path, seconds):
    """Whether a file of this size can hold ``seconds`` of sound (at least ``MIN_BITS_PER_SECOND``): a 20 KB file
    whose timestamps claim ten hours cannot.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "small.webm")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"x" * 20000)
    >>> believable_duration(path, 60.0), believable_duration(path, 36000.0)
    (True, False)
    """
    return os.path.getsize(path) * 8 >= seconds * MIN_BITS_PER_SECOND


def open_container(path):
    """``av.open(path)``, with what FFmpeg cannot open reported as ``unreadable``."""
    try:
        return av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise ClipProblem("unreadable", f"{path}: {error}") from None


def resampled_length(samples, file_rate, rate):
    """Samples of ``rate`` that ``samples`` at ``file_rate`` resample to (soxr's count: rounded).

    Example
    -------
    >>> resampled_length(1000, 44100, 16000), resampled_length(48000, 48000, 16000)
    (363, 16000)
    """
    return (2 * samples * rate + file_rate) // (2 * file_rate)


def resampling_grid(file_rate, rate):
    """Samples of ``file_rate`` and of ``rate`` between two instants where both rates have a sample.

    Example
    -------
    >>> resampling_grid(44100, 16000), resampling_grid(44101, 16000)
    ((441, 160), (44101, 16000))
    """
    common = math.gcd(int(file_rate), int(rate))
    return file_rate // common, rate // common
