"""SpeechBrain's CNN14 (PANNs) as an encoder of this package, the convolutional anchor of the comparisons.

``CNN14`` is ``speechbrain.lobes.models.Cnn14.Cnn14`` as SpeechBrain's ESC-50 recipe builds it (80 mel bins,
2048-dimensional embedding, batch norm), with the encoder contract of this package: it takes
``(feats, lengths)``, checks its input, records its constructor arguments for the export and has
``set_time_resolution``. Its features are ``lobes.features.MagnitudeMelLog1p`` (the recipe's STFT, mel
filterbank of magnitudes and ``log1p``). The network pools over every frame it is given: in training, as in
SpeechBrain's recipe, padded frames are zeros in its input; in inference each clip is embedded on its own
frames, so that a clip's embedding does not depend on its batch.
"""

import torch
from speechbrain.lobes.models.Cnn14 import Cnn14

from speechbrain_datar.lobes.checkpoint_mapping import CheckpointLayoutError, ImportReport, Mapper, read_state_dict
from speechbrain_datar.lobes.encoder import AudioEncoder
from speechbrain_datar.nnet.layers import record_init_kwargs
from speechbrain_datar.nnet.masking import valid_frames, zero_padded_frames

__all__ = ["CNN14"]


class CNN14(AudioEncoder):
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

    def load_pretrained(self, checkpoint, streams=None, head=None, source_name="CNN14 checkpoint"):
        """Loads the weights of SpeechBrain's ``Cnn14`` (its ESC-50 recipe's ``embedding_model.ckpt``, or a
        model's ``state_dict``) of the same ``n_mels`` and ``emb_dim``; anything else is refused, naming keys."""
        if streams not in (None, ("audio",)):
            raise CheckpointLayoutError(f"CNN14 has an audio stream only, not {list(streams)}")
        state = read_state_dict(checkpoint)
        state = {key[len("cnn.") :] if key.startswith("cnn.") else key: value for key, value in state.items()}
        report = ImportReport(source_name)
        mapper = Mapper(state, self.cnn, report)
        for key in self.cnn.state_dict():
            mapper.take(key, key)
        return mapper.finish(self.cnn)

    #: Frames the network needs (five 2x2 poolings before its last block); shorter clips are padded with zeros.
    MIN_FRAMES = 32

    def forward(self, feats, lengths=None):
        """Embeddings ``[batch, 1, emb_dim]`` of features ``[batch, time, n_mels]``.

        In training the batch goes through as SpeechBrain's recipe sends it (padded frames are zeros). In
        inference each clip is embedded on its own frames, since the network pools over every frame it is
        given: a clip's embedding then does not depend on the other clips of its batch.
        """
        frames = valid_frames(feats, lengths, self.n_mels, "CNN14")
        if frames is not None:
            feats = zero_padded_frames(feats, frames)
        if torch.compiler.is_exporting():  # a graph of any length: its callers give it whole windows
            return self.cnn(feats)
        if frames is None or self.training or bool((frames == feats.shape[1]).all()):
            return self.cnn(self._at_least_min_frames(feats))
        embeddings = None
        for length in frames.unique().tolist():
            rows = (frames == length).nonzero().squeeze(1)
            embedded = self.cnn(self._at_least_min_frames(feats[rows, :length]))
            if embeddings is None:
                embeddings = embedded.new_empty(feats.shape[0], *embedded.shape[1:])
            embeddings[rows] = embedded
        return embeddings

    def _at_least_min_frames(self, feats):
        missing = self.MIN_FRAMES - feats.shape[1]
        return torch.nn.functional.pad(feats, (0, 0, 0, missing)) if missing > 0 else feats
