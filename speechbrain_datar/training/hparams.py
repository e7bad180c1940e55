"""A recipe's hyperparameters: one file in ``hparams/``, loaded as HyperPyYAML loads it.

Every file in ``hparams/`` holds every setting of its runs (the model, its data set's settings, training,
evaluation, export) and loads with ``hyperpyyaml.load_hyperpyyaml`` alone, as the files of SpeechBrain's
recipes do; nothing is merged. The order is the file, then the command line: ``--lr=5e-4`` replaces the
file's ``lr``. Each file names the data set it is for (``dataset``), and a recipe refuses a file of
another data set in one line, naming the file to use.

Example
-------
>>> import tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "model.yaml")
>>> with open(path, "w") as f:
...     _ = f.write("dataset: ESC50\\nlr: 0.001\\nwarmup: !ref <lr> * 2\\n")
>>> hparams = load_hparams(path, {"lr": 0.5})
>>> hparams["lr"], hparams["warmup"]
(0.5, 1.0)
>>> load_hparams(path, {"lrr": 0.5})
Traceback (most recent call last):
...
KeyError: "Override 'lrr' not found in model.yaml; its settings: ['dataset', 'lr', 'warmup']"
"""

import io
import os

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml

from speechbrain_datar.errors import DataError

__all__ = ["check_dataset", "load_hparams", "top_level_keys"]


def top_level_keys(text):
    """The top-level settings of a YAML document (HyperPyYAML's tags are kept, not resolved).

    Example
    -------
    >>> sorted(top_level_keys("a: 1\\nb: !new:collections.Counter\\n    x: 1\\nc: !ref <a>\\n"))
    ['a', 'b', 'c']
    """
    document = ruamel.yaml.YAML(typ="rt").load(text)
    return set(document or {})


def room_for_mappings(text, overrides):
    """``text`` where each setting that an override gives a mapping (``--init_from="{audio: a.pth, video:
    v.pth}"`` over ``init_from: null``) holds an empty mapping: HyperPyYAML merges a mapping override into a
    mapping only. The document is edited as YAML (ruamel, tags kept), and only when that is needed.

    Example
    -------
    >>> print(room_for_mappings("a: null  # none yet\\nb: 1\\n", {"a": {"x": 1}}), end="")
    a: {}    # none yet
    b: 1
    """
    yaml = ruamel.yaml.YAML(typ="rt")
    document = yaml.load(text)
    keys = [
        k for k, v in overrides.items() if isinstance(v, dict) and k in document and not isinstance(document[k], dict)
    ]
    if not keys:
        return text
    for key in keys:
        document[key] = ruamel.yaml.comments.CommentedMap()
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def parse_overrides(overrides):
    """Command-line overrides as SpeechBrain's ``parse_arguments`` gives them (YAML text) or a dict -> a dict."""
    if isinstance(overrides, str):
        return dict(ruamel.yaml.YAML().load(overrides) or {}) if overrides.strip() else {}
    return dict(overrides or {})


def load_hparams(path, overrides=None):
    """Loads the hparams file ``path`` with command-line ``overrides`` (a dict or YAML text).

    An override must name a setting of the file, else ``KeyError`` names it: a misspelt option never passes
    silently.
    """
    with open(path) as f:
        text = f.read()
    overrides = parse_overrides(overrides)
    keys = top_level_keys(text)
    unknown = sorted(set(overrides) - keys)
    if unknown:
        raise KeyError(f"Override '{unknown[0]}' not found in {os.path.basename(path)}; its settings: {sorted(keys)}")
    return load_hyperpyyaml(room_for_mappings(text, overrides), overrides)


def check_dataset(hparams, path, dataset):
    """Refuses, in one line naming the file to use, an hparams file written for another data set's recipe.

    Example
    -------
    >>> check_dataset({"dataset": "VGGSound"}, "hparams/datar.yaml", "KineticsSounds")
    Traceback (most recent call last):
    ...
    speechbrain_datar.errors.DataError: hparams/datar.yaml holds VGGSound's settings, not KineticsSounds's: use hparams/KineticsSounds/datar.yaml
    """
    written_for = hparams.get("dataset")
    if dataset is None or written_for in (None, dataset):
        return
    raise DataError(
        f"{path} holds {written_for}'s settings, not {dataset}'s: use hparams/{dataset}/{os.path.basename(path)}"
    )
