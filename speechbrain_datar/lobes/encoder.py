"""The encoder contract: what every encoder of this package has, with its defaults, in one place.

An encoder is what a recipe's ``embedding_model`` is and what an export wraps: DATAR, AST, CNN14, MBT and
late fusion all derive from ``AudioEncoder`` and override only what differs from the defaults below. The
training recipes, the exports, timelines and the ONNX graphs ask an encoder nothing else.

``tests/unit/lobes/test_encoder_contract.py`` runs every encoder through the same checks.
"""

import functools

from torch import nn

from speechbrain_datar.lobes.checkpoint_mapping import ImportReport, Mapper, read_state_dict

__all__ = ["AudioEncoder"]


def load_own_layout(model, state, source_name):
    """Loads ``state`` into ``model`` when it is in the model's own layout (its ``state_dict`` keys, no more and
    no fewer) and returns the report; ``None`` for any other layout."""
    own = model.state_dict()
    if set(state) != set(own):
        return None
    mapper = Mapper(state, model, ImportReport(source_name))
    for key in own:
        mapper.take(key, key)
    return mapper.finish(model)


def _taking_own_layout(load_pretrained):
    """Wraps a subclass's ``load_pretrained``: a checkpoint in the encoder's own layout (a saved ``state_dict``
    of the same model) loads as it is; any other goes to the subclass's import, read once."""

    @functools.wraps(load_pretrained)
    def load(self, checkpoint, *args, **kwargs):
        """Loads the model's own layout as it is; other layouts through the family's importer."""
        state = read_state_dict(checkpoint)
        report = load_own_layout(self, state, kwargs.get("source_name") or f"{type(self).__name__} state")
        return report if report is not None else load_pretrained(self, state, *args, **kwargs)

    return load


class AudioEncoder(nn.Module):
    """Base of this package's encoders: ``forward(feats, lengths) -> [batch, 1, embedding_dim]``.

    ``feats`` are ``[batch, time, n_mels]`` features and ``lengths`` SpeechBrain's relative lengths in
    (0, 1] (``None``: every clip is full length). A subclass sets ``n_mels`` and ``embedding_dim`` in its
    constructor and implements ``forward`` and ``load_pretrained``; the other members have defaults that
    suit an encoder with no time axis of its own to report and any input length.

    Example
    -------
    >>> import torch
    >>> class MeanEncoder(AudioEncoder):
    ...     def __init__(self, n_mels):
    ...         super().__init__()
    ...         self.n_mels = self.embedding_dim = n_mels
    ...     def forward(self, feats, lengths=None):
    ...         return feats.mean(dim=1, keepdim=True)
    >>> encoder = MeanEncoder(4)
    >>> encoder(torch.ones(2, 3, 4)).shape, encoder.export_frames(7), encoder.time_column_frames
    (torch.Size([2, 1, 4]), 7, None)
    """

    #: Input frames per column of ``column_embeddings`` (timelines by columns); ``None``: no time axis to follow.
    time_column_frames = None
    #: Whether ``forward_features(..., return_sampling=True)`` records where deformable blocks read their keys.
    draws_sampling_points = False
    #: Frames by which the time axis of an exported graph grows: 1, any length.
    export_time_step = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "load_pretrained" in cls.__dict__:  # every encoder also takes its own saved state
            cls.load_pretrained = _taking_own_layout(cls.__dict__["load_pretrained"])

    def export_frames(self, frames):
        """Frames an exported graph is given for a clip of ``frames``: by default the clip's own."""
        return int(frames)

    def set_time_resolution(self, factor=1, patch_resize=None):
        """Adapts the encoder to features ``factor`` times coarser in time (coarse-to-fine training); 1 restores
        the resolution it was built for. By default there is nothing to adapt (any number of frames is taken as
        it comes)."""

    def column_embeddings(self, feats, lengths=None):
        """Embeddings ``[batch, columns, embedding_dim]`` of consecutive stretches of ``time_column_frames``
        frames; only encoders with a time axis to follow have them."""
        raise NotImplementedError(
            f"{type(self).__name__} has no time axis to follow: timelines of it use sliding windows "
            "(timeline(method='windows'))"
        )

    def load_pretrained(self, checkpoint, streams=None, head=None, source_name="checkpoint"):
        """Loads weights from a checkpoint (a path or a state dict) and returns the ``ImportReport``. A
        subclass imports the layouts of its family (DAT, ViT/AST, ...); the encoder's own layout (its saved
        ``state_dict``) is taken by every encoder before the subclass's import is asked."""
        raise NotImplementedError(f"{type(self).__name__} does not import checkpoints")

    def forward(self, feats, lengths=None):
        """Embeddings ``[batch, 1, embedding_dim]`` of features ``[batch, time, n_mels]``."""
        raise NotImplementedError


AudioEncoder.load_pretrained = _taking_own_layout(AudioEncoder.load_pretrained)
