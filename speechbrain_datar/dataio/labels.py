"""Label encoders: fitted once on the training labels, saved beside the manifests."""

import os

from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_datar.errors import MissingDataError


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
        raise MissingDataError(f"label encoder {path} not found: has data preparation run?")
    encoder = CategoricalEncoder()
    encoder.load(path)
    return encoder


def label_encoders_of(hparams):
    """``{key: CategoricalEncoder}`` of an exported model's hparams, one per head, in the heads' order
    (exports of version 0.1 have one head and no ``label_keys``).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> verbs, nouns = CategoricalEncoder(), CategoricalEncoder()
    >>> list(label_encoders_of(SimpleNamespace(label_keys=["verb", "noun"], label_encoder_verb=verbs,
    ...                                        label_encoder_noun=nouns)))
    ['verb', 'noun']
    """
    keys = getattr(hparams, "label_keys", ["label"])
    return {key: getattr(hparams, label_encoder_name(key)) for key in keys}


def class_names(hparams):
    """``{key: [class name by index]}`` of an exported model's hparams (``label_encoders_of``)."""
    return {
        key: [encoder.ind2lab[i] for i in range(len(encoder))] for key, encoder in label_encoders_of(hparams).items()
    }


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


def class_balanced_weights(label_lists):
    """Sampling weight of each clip that balances the classes, as AudioSet's weighted sampler (AST, PaSST)
    does: the sum, over the clip's labels, of the inverse of the label's count in the set.

    Example
    -------
    >>> class_balanced_weights([["speech"], ["speech"], ["speech", "dog"]])
    [0.3333333333333333, 0.3333333333333333, 1.3333333333333333]
    """
    counts = {}
    for labels in label_lists:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    return [sum(1.0 / counts[label] for label in labels) for labels in label_lists]


def names_of_mids(clip_id, mids, names, report):
    """The class names of a clip's ontology MIDs (AudioSet, FSD50K), sorted; an MID without a name is
    counted in ``report`` as ``unknown_mid``, and a clip left without any as ``no_known_label`` (``None``).

    Example
    -------
    >>> from speechbrain_datar.dataio.report import SkipReport
    >>> report = SkipReport("csv")
    >>> names_of_mids("clip", ["/m/b", "/m/x", "/m/a"], {"/m/a": "Dog", "/m/b": "Bark"}, report), report.counts
    (['Bark', 'Dog'], {'unknown_mid': 1})
    """
    known = []
    for mid in mids:
        if mid in names:
            known.append(names[mid])
        else:
            report.add("unknown_mid", f"{clip_id}: {mid}")
    if not known:
        report.add("no_known_label", f"{clip_id}: {list(mids)}")
        return None
    return sorted(set(known))
