"""Helpers that turn SpeechBrain relative lengths into masks over padded maps.

Every encoder in this package pads its input map and keeps a boolean mask of the
valid (unpadded) positions. Padded positions are kept exactly at zero through
every layer, so that a clip's output does not depend on what else is in the batch.
"""

import math

import torch


def relative_to_absolute_lengths(lengths, max_len):
    """Converts SpeechBrain relative lengths in (0, 1] to frame counts.

    Uses ``floor(rel * (max_len - 1)) + 1``. For lengths given relative to the
    feature frames (``rel = L / max_len``) this is exactly ``L``. For lengths
    relative to waveform samples, as ``EncoderClassifier`` passes them, it is the
    number of frames a centred STFT gives the unpadded waveform, so a clip in a
    padded batch gets as many frames as the clip alone (``round(rel * max_len)``
    can differ by one).

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths ``[batch]``; ``None`` means every item is full length.
    max_len : int
        Number of frames of the padded batch.

    Returns
    -------
    torch.Tensor
        Integer frame counts ``[batch]``, each in ``[1, max_len]``.

    Example
    -------
    >>> relative_to_absolute_lengths(torch.tensor([1.0, 0.5]), 10)
    tensor([10,  5])
    >>> relative_to_absolute_lengths(torch.tensor([16000 / 64000]), 401)  # 1 s in a 4 s batch
    tensor([101])
    """
    if max_len < 1:
        raise ValueError("The input has no frames: nothing to embed.")
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be a 1-D tensor of relative lengths, got shape {tuple(lengths.shape)}")
    # An exported graph cannot raise on its data; its callers check (speechbrain_datar.inference.onnx_runtime).
    if not torch.compiler.is_exporting() and (torch.any(lengths <= 0) or torch.any(lengths > 1.0 + 1e-6)):
        raise ValueError(
            "lengths must be relative lengths in (0, 1] as SpeechBrain passes them; "
            f"got min {lengths.min().item():.4g}, max {lengths.max().item():.4g}"
        )
    frames = torch.floor(lengths.double() * (max_len - 1) + 1e-4).long() + 1
    return frames.clamp(min=1, max=max_len)


def valid_frames(feats, lengths, n_mels, model_name):
    """Checks ``[batch, time, n_mels]`` features and returns each clip's frame count (``None``: all full).

    The one input check of every encoder in this package.

    Example
    -------
    >>> valid_frames(torch.zeros(2, 10, 4), torch.tensor([1.0, 0.5]), 4, "DATAR")
    tensor([10,  5])
    >>> valid_frames(torch.zeros(2, 10, 8), None, 4, "DATAR")
    Traceback (most recent call last):
    ...
    ValueError: DATAR was built for 4 mel bins, got features with 8
    """
    if feats.dim() != 3:
        raise ValueError(f"{model_name} expects features [batch, time, n_mels], got shape {tuple(feats.shape)}")
    if feats.shape[-1] != n_mels:
        raise ValueError(f"{model_name} was built for {n_mels} mel bins, got features with {feats.shape[-1]}")
    frames = relative_to_absolute_lengths(lengths, feats.shape[1])
    return None if frames is None else frames.to(feats.device)


def zero_padded_frames(feats, frames):
    """Sets the frames of ``[batch, time, *]`` beyond each clip's ``frames`` to zero.

    Example
    -------
    >>> zero_padded_frames(torch.ones(2, 3, 1), torch.tensor([3, 1]))[..., 0]
    tensor([[1., 1., 1.],
            [1., 0., 0.]])
    """
    if frames is None:
        return feats
    # SpeechBrain's length_to_mask takes len() of the lengths, which would fix an exported graph's batch size.
    valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < frames.to(feats.device)[:, None]
    return feats.masked_fill(~valid.reshape(*valid.shape, *([1] * (feats.dim() - 2))), 0.0)


def zero_masked(x, mask):
    """Sets the masked-out positions of a channels-last map ``[batch, *, channels]`` to zero.

    Example
    -------
    >>> zero_masked(torch.ones(1, 2, 1), torch.tensor([[True, False]]))[..., 0]
    tensor([[1., 0.]])
    """
    return x if mask is None else x.masked_fill(~mask.unsqueeze(-1), 0.0)


def ceil_div(value, divisor):
    """Ceiling division that works on ints and integer tensors.

    Example
    -------
    >>> ceil_div(7, 2)
    4
    >>> ceil_div(torch.tensor([7, 8]), 2)
    tensor([4, 4])
    """
    if isinstance(value, torch.Tensor):
        return torch.div(value + divisor - 1, divisor, rounding_mode="floor")
    if isinstance(value, (int, torch.SymInt)):
        return -(-value // divisor)  # integer arithmetic: also exact on the symbolic sizes of an exported graph
    return int(math.ceil(value / divisor))


def patches_within(frames, width, stride):
    """Patches of ``width`` frames every ``stride`` frames that lie inside ``frames`` valid frames (at
    least one: a clip shorter than a patch is padded to one).

    Example
    -------
    >>> patches_within(torch.tensor([10, 16, 40]), 16, 16)
    tensor([1, 1, 2])
    """
    frames = torch.as_tensor(frames).clamp(min=width)
    return torch.div(frames - width, stride, rounding_mode="floor") + 1


def unless_full(mask):
    """``mask``, or ``None`` when every position is valid (the layers then skip masking).

    While a graph is being exported (``torch.export``, ONNX) the mask is always kept: an exported graph
    cannot branch on the data, and a full mask gives the same results as none.

    Example
    -------
    >>> unless_full(torch.ones(1, 2, dtype=torch.bool)) is None
    True
    """
    if torch.compiler.is_exporting():
        return mask
    return None if bool(mask.all()) else mask


def spectrogram_token_mask(frames, n_time, f_dim, n_special, width, stride):
    """Valid-token mask of a ViT over spectrogram patches, or ``None`` when every token is valid.

    Arguments
    ---------
    frames : torch.Tensor or None
        Valid frames of each clip ``[batch]`` (``None``: all valid).
    n_time, f_dim : int
        Patch columns (time) and rows (frequency) of the padded batch; tokens are in (frequency, time) order.
    n_special : int
        Tokens before the patches (CLS, distillation), always valid.
    width, stride : int
        Patch width and time stride in frames.

    Example
    -------
    >>> spectrogram_token_mask(torch.tensor([32, 16]), 2, 1, 1, 16, 16)
    tensor([[ True,  True,  True],
            [ True,  True, False]])
    >>> spectrogram_token_mask(torch.tensor([32, 32]), 2, 1, 1, 16, 16) is None
    True
    """
    if frames is None:
        return None
    valid_t = patches_within(frames, width, stride)
    t_index = torch.arange(n_time, device=valid_t.device).repeat(f_dim)
    special = torch.ones(valid_t.shape[0], n_special, dtype=torch.bool, device=valid_t.device)
    return unless_full(torch.cat((special, t_index[None, :] < valid_t[:, None]), dim=1))


def grid_mask(valid_w, valid_h, height, width):
    """Boolean mask ``[batch, height, width]`` of valid positions of a 2-D map.

    Arguments
    ---------
    valid_w : torch.Tensor
        Valid width (time) of each item ``[batch]``.
    valid_h : int
        Valid height (frequency), the same for every item.
    height, width : int
        Size of the padded map.

    Returns
    -------
    torch.Tensor
        ``True`` where the position holds data.

    Example
    -------
    >>> grid_mask(torch.tensor([3, 1]), 2, 3, 4).int()[1]
    tensor([[1, 0, 0, 0],
            [1, 0, 0, 0],
            [0, 0, 0, 0]], dtype=torch.int32)
    """
    cols = torch.arange(width, device=valid_w.device)
    rows = torch.arange(height, device=valid_w.device)
    col_ok = cols[None, :] < valid_w[:, None]  # B, W
    row_ok = rows < valid_h  # H
    return row_ok[None, :, None] & col_ok[:, None, :]


def masked_mean(x, mask):
    """Mean over the valid positions of a channels-last map.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, height, width, channels]``.
    mask : torch.Tensor or None
        Boolean ``[batch, height, width]``; ``None`` averages everything.

    Returns
    -------
    torch.Tensor
        ``[batch, channels]``.

    Example
    -------
    >>> x = torch.ones(1, 2, 2, 3); x[0, :, 1] = 5.0
    >>> masked_mean(x, torch.tensor([[[True, False], [True, False]]]))
    tensor([[1., 1., 1.]])
    """
    if mask is None:
        return x.mean(dim=(1, 2))
    weights = mask.to(x.dtype).unsqueeze(-1)
    total = (x * weights).sum(dim=(1, 2))
    count = weights.sum(dim=(1, 2)).clamp(min=1.0)
    return total / count


def attention_mask_value(dtype):
    """A large negative, finite logit for masked keys in ``dtype``.

    Finite (unlike ``-inf``) so that a fully padded window gives finite values
    that are then zeroed, instead of NaNs that would poison the backward pass.

    Example
    -------
    >>> attention_mask_value(torch.float16) < -1e4
    True
    """
    return torch.finfo(dtype).min / 2
