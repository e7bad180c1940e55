"""Inference interfaces for exported models: video files as well as audio files, and several heads.

``EncoderClassifier`` serves an exported one-head model from audio files;
``AudioClassifier`` is the same interface that also reads the audio stream of a
video file (mp4, mkv, webm, ...), and ``MultiHeadAudioClassifier`` serves models
with several heads (EPIC-KITCHENS: verb and noun).
"""

import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.inference.interfaces import Pretrained

from speechbrain_datar.dataio.audio import load_clip
from speechbrain_datar.dataio.video import is_video


class VideoFiles:
    """``load_audio`` that reads video files' audio streams too (SpeechBrain's reads audio files only)."""

    def load_audio(self, path, savedir=None):
        """The mono waveform at the model's rate, from an audio file or a video file's audio stream."""
        if is_video(str(path)):
            return load_clip(str(path), self.audio_normalizer.sample_rate)
        return super().load_audio(path, savedir=savedir)


class AudioClassifier(VideoFiles, EncoderClassifier):
    """``EncoderClassifier`` that also classifies video files by their sound.

    Example (a folder exported by a recipe)::

        classifier = AudioClassifier.from_hparams(source="results/datar_tiny/1234/pretrained")
        out_prob, score, index, label = classifier.classify_file("clip.mp4")
    """


class MultiHeadAudioClassifier(VideoFiles, Pretrained):
    """``EncoderClassifier``'s counterpart for models with several heads (EPIC-Kitchens: verb and noun).

    Load an exported folder with ``MultiHeadAudioClassifier.from_hparams(source=folder)``.
    Every method returns a dict with one entry per head, each entry holding what
    ``EncoderClassifier`` returns for its single head.
    """

    MODULES_NEEDED = ["compute_features", "mean_var_norm", "embedding_model", "classifier"]
    HPARAMS_NEEDED = ["label_keys"]

    def encode_batch(self, wavs, wav_lens=None):
        """Embeddings ``[batch, n_windows, dim]`` (``[batch, 1, dim]`` for clips up to one window)."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=self.device)
        wavs, wav_lens = wavs.to(self.device).float(), wav_lens.to(self.device)
        feats = self.mods.compute_features(wavs)
        feats = self.mods.mean_var_norm(feats, wav_lens)
        return self.mods.embedding_model(feats, wav_lens)

    def classify_batch(self, wavs, wav_lens=None):
        """Per head: log-probabilities ``[batch, C]``, best score, best index, best label."""
        scores = self.mods.classifier(self.encode_batch(wavs, wav_lens))
        results = {}
        for key in self.hparams.label_keys:
            out_prob = scores[key].squeeze(1)
            score, index = torch.max(out_prob, dim=-1)
            encoder = getattr(self.hparams, f"label_encoder_{key}")
            results[key] = (out_prob, score, index, encoder.decode_torch(index))
        return results

    def classify_file(self, path, **kwargs):
        """Classifies one audio file (any length; long files by averaged sliding windows)."""
        waveform = self.load_audio(path, **kwargs)
        return self.classify_batch(waveform.unsqueeze(0), torch.tensor([1.0]))

    def forward(self, wavs, wav_lens=None):
        """Runs the classification."""
        return self.classify_batch(wavs, wav_lens)
