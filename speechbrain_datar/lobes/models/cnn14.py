"""SpeechBrain's CNN14 (PANNs) as an encoder of this package, the convolutional anchor of the comparisons.

``CNN14`` is ``speechbrain.lobes.models.Cnn14.Cnn14`` as SpeechBrain's ESC-50 recipe builds it (80 mel bins,
2048-dimensional embedding, batch norm), with the encoder contract of this package: it takes
``(feats, lengths)``, checks its input, records its constructor arguments for the export and has
``set_time_resolution``. Its features are ``lobes.features.MagnitudeMelLog1p`` (the recipe's STFT, mel
filterbank of magnitudes and ``log1p``). As in SpeechBrain's recipe, the network pools over every frame it is
given: padded frames are zeros in its input, not masked.
"""

import torch
from speechbrain.lobes.models.Cnn14 import Cnn14

from speechbrain_datar.nnet.layers import record_init_kwargs
from speechbrain_datar.nnet.masking import valid_frames, zero_padded_frames


class CNN14(torch.nn.Module):
    """CNN14 encoder: ``embedding_model(feats, lengths) -> [batch, 1, emb_dim]``.

    Arguments
    ---------
    n_mels : int
        Mel bins of the input (80 in SpeechBrain's ESC-50 recipe).
    emb_dim : int
        Size of the embedding.
    norm_type : str
        ``bn`` (batch norm, the recipe's), ``in`` or ``ln``, as SpeechBrain's ``Cnn14`` takes.

    Example
    -------
    >>> model = CNN14(n_mels=64, emb_dim=32).eval()
    >>> model(torch.randn(2, 64, 64), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 1, 32])
    """

    def __init__(self, n_mels=80, emb_dim=2048, norm_type="bn"):
        super().__init__()
        self.init_kwargs = record_init_kwargs(locals())
        self.n_mels, self.embedding_dim = n_mels, emb_dim
        self.cnn = Cnn14(mel_bins=n_mels, emb_dim=emb_dim, norm_type=norm_type)

    def set_time_resolution(self, factor=1, patch_resize=None):
        """A convolutional network takes any number of frames: coarse-to-fine phases change nothing here."""

    def forward(self, feats, lengths=None):
        """Embeddings ``[batch, 1, emb_dim]`` of features ``[batch, time, n_mels]``."""
        frames = valid_frames(feats, lengths, self.n_mels, "CNN14")
        if frames is not None:
            feats = zero_padded_frames(feats, frames)
        return self.cnn(feats)
