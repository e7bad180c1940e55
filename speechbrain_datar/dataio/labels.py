"""Label encoders: fitted once on the training labels, saved beside the manifests."""

import os

from speechbrain.dataio.encoder import CategoricalEncoder


def label_encoder_name(key):
    """Name of the label encoder of ``key``: ``label_encoder`` for single-head recipes, else ``label_encoder_<key>``.

    Example
    -------
    >>> label_encoder_name("label"), label_encoder_name("verb")
    ('label_encoder', 'label_encoder_verb')
    """
    return "label_encoder" if key == "label" else f"label_encoder_{key}"


def label_encoder_file(key):
    """File the preparation writes the label encoder of ``key`` to."""
    return label_encoder_name(key) + ".txt"


def fit_label_encoder(labels, path):
    """Fits a ``CategoricalEncoder`` on ``labels`` (sorted, so indices are reproducible) and saves it.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> fit_label_encoder({"dog", "cat"}, path).lab2ind
    {'cat': 0, 'dog': 1}
    """
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(sorted(labels))
    encoder.save(path)
    return encoder


def load_label_encoder(path):
    """Loads an encoder saved by ``fit_label_encoder``, with a clear error if it is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label encoder {path} not found: has data preparation run?")
    encoder = CategoricalEncoder()
    encoder.load(path)
    return encoder


def expecting(n_classes):
    """An empty ``CategoricalEncoder`` that will hold ``n_classes`` labels once loaded.

    Used in exported inference hparams, so that loading checks the label count.

    Example
    -------
    >>> expecting(3).expected_len
    3
    """
    encoder = CategoricalEncoder()
    encoder.expect_len(n_classes)
    return encoder
