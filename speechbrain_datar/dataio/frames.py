"""Frames for audio-visual models: which frames a clip's span gives, and how they are augmented.

MBT's defaults: 8 frames spread uniformly over the span (VGGSound, Kinetics),
or 32 consecutive frames (EPIC-KITCHENS); in training a random resized crop and a
horizontal flip (one draw per clip, so that its frames stay aligned), in
evaluation the short side resized and a centre crop.
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_datar.errors import DataError

SAMPLINGS = ("uniform", "consecutive")
#: The frame rate assumed where a clip's own is not recorded (MBT's videos are 25 fps).
DEFAULT_FPS = 25.0


def frame_times(span_start, span_stop, n_frames, sampling="uniform", fps=25.0, stride=1, random_start=False):
    """Times (seconds) of the frames a span gives.

    ``uniform``: the centres of ``n_frames`` equal parts of the span.
    ``consecutive``: ``n_frames`` frames ``stride`` video frames apart, starting at a
    random place (``random_start``) or centred in the span; a span shorter than
    that repeats its last frame.

    Example
    -------
    >>> frame_times(0.0, 8.0, 4)
    [1.0, 3.0, 5.0, 7.0]
    >>> frame_times(10.0, 20.0, 3, "consecutive", fps=10)
    [14.9, 15.0, 15.1]
    """
    if sampling not in SAMPLINGS:
        raise DataError(f"frame sampling must be one of {SAMPLINGS}, got {sampling!r}")
    length = span_stop - span_start
    if sampling == "uniform":
        return [span_start + (i + 0.5) * length / n_frames for i in range(n_frames)]
    step = stride / fps
    extent = (n_frames - 1) * step
    room = max(0.0, length - extent)
    first = span_start + (float(torch.rand(())) * room if random_start else room / 2)
    return [round(min(first + i * step, span_stop), 6) for i in range(n_frames)]


class FrameTransform:
    """Square frames of ``size``: random resized crop and flip in training, resize and centre crop otherwise.

    Arguments
    ---------
    size : int
        Output height and width.
    train : bool
        Random augmentation (one draw per call, the same for all frames of a clip).
    scale : tuple
        Range of the crop's area as a fraction of the frame's (training).
    ratio : tuple
        Range of the crop's aspect ratio (training).
    flip : float
        Probability of a horizontal flip (training).

    Example
    -------
    >>> frames = torch.randint(0, 256, (8, 3, 90, 160), dtype=torch.uint8)
    >>> FrameTransform(64)(frames).shape, FrameTransform(64, train=True)(frames).dtype
    (torch.Size([8, 3, 64, 64]), torch.uint8)
    """

    def __init__(self, size=224, train=False, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), flip=0.5):
        self.size, self.train = int(size), train
        self.scale, self.ratio, self.flip = scale, ratio, flip

    def _crop_box(self, height, width):
        if not self.train:
            side = min(height, width)
            return (height - side) // 2, (width - side) // 2, side, side
        for _ in range(10):
            area = height * width * float(torch.empty(()).uniform_(*self.scale))
            aspect = math.exp(float(torch.empty(()).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))))
            h, w = int(round(math.sqrt(area / aspect))), int(round(math.sqrt(area * aspect)))
            if 0 < h <= height and 0 < w <= width:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side

    def __call__(self, frames):
        """uint8 ``[n, 3, H, W]`` -> uint8 ``[n, 3, size, size]``."""
        top, left, h, w = self._crop_box(*frames.shape[-2:])
        crop = frames[..., top : top + h, left : left + w]
        size = (self.size, self.size)
        if self.train:
            # torch's uint8 path (channels-last) is 3-4x faster than float; within one level of it
            out = F.interpolate(
                crop.contiguous(memory_format=torch.channels_last),
                size=size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).contiguous()
            return out.flip(-1) if float(torch.rand(())) < self.flip else out
        # evaluation keeps the float path: exported models' outputs stay those of earlier versions
        out = F.interpolate(crop.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        return out.round().clamp(0, 255).to(torch.uint8)


class FrameNormalization(torch.nn.Module):
    """uint8 frames ``[*, 3, H, W]`` -> float ``(x / 255 - mean) / std`` per colour channel.

    The default (0.5, 0.5) maps pixels to [-1, 1], as ImageNet-21k ViT weights expect.

    Example
    -------
    >>> FrameNormalization()(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)).unique()
    tensor([1.])
    """

    def __init__(self, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(3, 1, 1))

    def forward(self, frames):
        """Normalised float frames."""
        return (frames.float() / 255.0 - self.mean) / self.std
