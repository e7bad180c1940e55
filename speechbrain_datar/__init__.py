"""SpeechBrain modules for DATAR, the Deformable Audio Transformer for audio event recognition."""

__version__ = "0.3.0"
