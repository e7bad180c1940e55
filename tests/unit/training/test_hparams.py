"""Every file in hparams/ is plain HyperPyYAML: SpeechBrain's loader alone builds its objects, and the
documented commands resolve to the hyperparameters they resolved to in version 0.2."""

import glob
import gzip
import json
import os

import pytest
import ruamel.yaml
from conftest import ROOT
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import resolve_references

from speechbrain_datar.errors import DataError
from speechbrain_datar.lobes.encoder import AudioEncoder
from speechbrain_datar.training.hparams import check_dataset, load_hparams, parse_overrides

FILES = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "hparams", "**", "*.yaml"), recursive=True)
)


@pytest.mark.parametrize("path", FILES)
def test_every_hparams_file_loads_with_hyperpyyaml_alone_and_builds_its_model(path):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    overrides = {"data_folder": "/data"}
    if "\npreset:" in text:  # the smallest preset: the same objects, built quickly
        overrides["preset"] = "micro"
    hparams = load_hyperpyyaml(text, overrides)
    assert isinstance(hparams["embedding_model"], AudioEncoder)
    assert hparams["classifier"] is hparams["modules"]["classifier"]
    assert hparams["dataset"] == (os.path.basename(os.path.dirname(path)) if path.count("/") == 2 else "VGGSound")


def resolved(path, overrides):
    """The configuration of ``path`` with ``overrides`` once HyperPyYAML has resolved its references (tags kept)."""

    def data(node):
        tag = getattr(getattr(node, "tag", None), "value", None)
        if isinstance(node, dict):
            value = {str(k): data(v) for k, v in node.items()}
        elif isinstance(node, (list, tuple)):
            value = [data(v) for v in node]
        elif hasattr(node, "value") and tag is not None:
            value = node.value
        else:
            value = node if isinstance(node, (int, float, str, bool, type(None))) else str(node)
        return {"!": tag, "value": value} if tag and not tag.startswith("tag:yaml.org") else value

    with open(os.path.join(ROOT, path)) as f:
        document = resolve_references(f, overrides)
    return data(ruamel.yaml.YAML(typ="rt").load(document))


with gzip.open(os.path.join(ROOT, "tests", "data", "resolved_hparams_v0_2.json.gz"), "rt") as f:
    #: Each command the pages of version 0.2 documented, and the configuration it resolved to then.
    BEFORE = json.load(f)


#: Settings of 0.2 that nothing read, removed in 0.3: audio-visual models are evaluated on temporal crops,
#: never on sliding windows (``test_speechbrain_consistency.py`` finds a setting no one reads).
AUDIO_VISUAL_UNREAD_IN_0_2 = ("eval_hop_seconds", "eval_max_windows", "eval_hop_frames")
#: A setting added in 0.3: the ESC-50 files' augmenters by name (``--feature_augment=spec_augment``). It
#: only refers to augmenters the files already built, so every setting of 0.2 resolves as it did.
ADDED_IN_0_3 = {"ESC50": ("augmentations",)}


@pytest.mark.parametrize("command", sorted(BEFORE))
def test_documented_commands_resolve_as_they_did(command):
    """A top-level model file given to another data set's recipe is now that data set's own file."""
    import speechbrain as sb

    entry = BEFORE[command]
    path = entry["hparams"]
    if path.count("/") == 1 and entry["recipe"] != "VGGSound":
        path = f"hparams/{entry['recipe']}/{os.path.basename(path)}"
    _, _, overrides = sb.parse_arguments([path, *entry["options"]])
    now = resolved(path, parse_overrides(overrides))
    assert now.pop("dataset") == entry["recipe"]
    before = dict(entry["resolved"])
    for key in ADDED_IN_0_3.get(entry["recipe"], ()):
        now.pop(key)
    if before["n_frames"]:  # an audio-visual model
        assert not any(key in now for key in AUDIO_VISUAL_UNREAD_IN_0_2)
        for key in AUDIO_VISUAL_UNREAD_IN_0_2:
            before.pop(key)
    assert now == before


def test_the_command_line_goes_over_the_file_and_a_misspelt_option_is_refused():
    path = os.path.join(ROOT, "hparams", "KineticsSounds", "datar.yaml")
    hparams = load_hparams(path, {"data_folder": "/data", "preset": "micro", "valid_ratio": 0.3})
    assert hparams["valid_ratio"] == 0.3 and hparams["number_of_epochs"] == 300
    with pytest.raises(KeyError, match="data_fodler"):
        load_hparams(path, {"data_fodler": "/data"})


def test_a_recipe_refuses_another_data_sets_file_naming_the_one_to_use():
    hparams = load_hparams(os.path.join(ROOT, "hparams", "datar.yaml"), "data_folder: /data\npreset: micro")
    check_dataset(hparams, "hparams/datar.yaml", "VGGSound")
    with pytest.raises(DataError, match="use hparams/KineticsSounds/datar.yaml"):
        check_dataset(hparams, "hparams/datar.yaml", "KineticsSounds")
    assert os.path.isfile(os.path.join(ROOT, "hparams", "KineticsSounds", "datar.yaml"))


def test_no_file_includes_another():
    """Nothing to merge: no file starts from another's settings."""
    for path in FILES:
        with open(os.path.join(ROOT, path)) as f:
            assert "!include" not in f.read(), path


def test_a_mapping_from_the_command_line_goes_over_a_setting_that_was_none():
    """The late-fusion command the pages show: one checkpoint per stream over ``init_from: null``."""
    import speechbrain as sb

    path = os.path.join(ROOT, "hparams", "late_fusion.yaml")
    _, _, overrides = sb.parse_arguments(
        [path, "--data_folder=/data", "--init_from={audio: /m/dat.pth, video: /m/vit.pth}", "--preset=micro"]
    )
    hparams = load_hparams(path, overrides)
    assert hparams["init_from"] == {"audio": "/m/dat.pth", "video": "/m/vit.pth"}
    assert type(hparams["embedding_model"]).__name__ == "LateFusion"


@pytest.mark.parametrize("model", ["ast", "cnn14", "datar"])
def test_an_augmentation_named_on_the_command_line_is_the_files_augmenter(model):
    """``--feature_augment=spec_augment --wave_augment=gain_shift_noise`` runs what the commands of 0.2 that
    point the options at the augmenters (``"!ref <spec_augment>"``) run; an unknown name stops the run before
    anything runs, naming the ones there are."""
    import speechbrain as sb

    from speechbrain_datar.training.recipe import choose_named_augmentations

    path = os.path.join(ROOT, "hparams", "ESC50", f"{model}.yaml")
    options = {
        "by name": ["spec_augment", "gain_shift_noise"],
        "by reference": ["!ref <spec_augment>", "!ref <gain_shift_noise>"],
    }
    chosen = {}
    for form, (feature, wave) in options.items():
        _, _, overrides = sb.parse_arguments(
            [path, "--data_folder=/data", f"--feature_augment={feature}", f"--wave_augment={wave}"]
        )
        hparams = choose_named_augmentations(load_hparams(path, overrides))
        assert hparams["feature_augment"] is hparams["spec_augment"]
        assert hparams["wave_augment"] is hparams["gain_shift_noise"]
        chosen[form] = [repr(hparams[key].augmentations) for key in ("feature_augment", "wave_augment")]
    assert chosen["by name"] == chosen["by reference"]
    with pytest.raises(DataError, match=r"--feature_augment 'specaugment' .*\['gain_shift_noise', 'spec_augment'\]"):
        choose_named_augmentations(load_hparams(path, {"data_folder": "/data", "feature_augment": "specaugment"}))
