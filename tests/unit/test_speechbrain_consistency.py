"""What SpeechBrain's consistency checks ask of a recipe's files, asked of ours.

SpeechBrain checks its recipes' YAML with yamllint (``.yamllint.yaml``), loads every file with
``load_hyperpyyaml`` (``tests/unit/training/test_hparams.py`` does that here), asks that every variable a
file declares is used by the file or by the code that runs it, and that every function and class has a
docstring (``tests/unit/test_layout.py``).
"""

import glob
import os
import re

import pytest
from conftest import ROOT
from speechbrain.utils.run_opts import RunOptions

HPARAMS = sorted(glob.glob(os.path.join(ROOT, "hparams", "**", "*.yaml"), recursive=True))


def test_yamllint_finds_nothing_in_hparams():
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=os.path.join(ROOT, ".yamllint.yaml"))
    problems = []
    for path in HPARAMS + [os.path.join(ROOT, ".yamllint.yaml")]:
        with open(path) as f:
            problems += [f"{os.path.relpath(path, ROOT)}:{p.line}: {p.message}" for p in linter.run(f, config, path)]
    assert problems == []


def code_that_reads_hparams():
    """The recipes' scripts and the package they run: a recipe's ``train.py`` hands its hparams to it."""
    paths = glob.glob(os.path.join(ROOT, "speechbrain_datar", "**", "*.py"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "recipes", "**", "*.py"), recursive=True)
    return "\n".join(open(path).read() for path in sorted(paths))


def top_level_keys(text):
    return [m.group(1) for m in re.finditer(r"^([A-Za-z_]\w*):", text, re.M)]


@pytest.mark.parametrize("path", HPARAMS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_variable_a_file_declares_is_used(path):
    """A key no ``!ref`` of its file and no code reads is a setting that does nothing: a user who changes it
    changes nothing. Keys that run at load (``__set_seed``) and SpeechBrain's run options are used by
    loading itself. As in SpeechBrain's check, a key that only a command line would point an option at
    (``--wave_augment="!ref <key>"``) counts as unused: the file names such keys in a setting the code reads
    (``augmentations`` in ``hparams/ESC50/*.yaml``)."""
    code = code_that_reads_hparams()
    run_options = set(RunOptions().as_dict())
    with open(path) as f:
        text = f.read()
    referenced = set(re.findall(r"<(\w+)[\[>]", text))
    unused = []
    for key in top_level_keys(text):
        if key.startswith("__") or key in referenced or key in run_options:
            continue
        readers = (f".{key}", f'["{key}"]', f'get("{key}"', f', "{key}"')
        if not any(reader in code for reader in readers):
            unused.append(key)
    assert unused == []


@pytest.mark.parametrize("path", HPARAMS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_key_is_set_before_a_reference_to_it(path):
    """HyperPyYAML resolves a reference to a key set further down, but a reader (and SpeechBrain's check)
    reads a file from the top: what ``<preset>`` is should be known where it is used."""
    with open(path) as f:
        lines = f.read().splitlines()
    keys = set(top_level_keys("\n".join(lines)))
    seen, forward = set(), []
    for number, line in enumerate(lines, 1):
        key = re.match(r"^([A-Za-z_]\w*):", line)
        if key:
            seen.add(key.group(1))
        code = line.split(" #")[0]
        forward += [f"{number}: <{ref}>" for ref in re.findall(r"<(\w+)[\[>]", code) if ref in keys - seen]
    assert forward == []
