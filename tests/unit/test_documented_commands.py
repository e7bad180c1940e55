"""Every command shown in README.md and docs/ names files that exist and options its script takes."""

import dataclasses
import glob
import os
import re
import shlex

import pytest
import speechbrain as sb
from conftest import ROOT

from speechbrain_datar.training.hparams import top_level_keys

#: Paths of SpeechBrain's own repository that the pages mention (they are not this repository's).
ELSEWHERE = {"recipes/ESC50/classification/train.py"}
PATH = re.compile(
    r"\b(?:recipes|hparams|benchmarks|docs|tests|speechbrain_datar)/[\w./-]*\w\.(?:py|yaml|json|png|md|csv)\b"
)
#: The pages (CHANGELOG.md is left out: it names the files that moved, where they were).
PAGES = ["README.md", *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def code_of(page):
    """The page's code: its fenced blocks (lines continued with a backslash joined) and inline spans."""
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    code = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    code += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
    return code


def commands(page):
    """``(script, arguments)`` of each ``python <script>`` in the page's code."""
    for line in code_of(page):
        for match in re.finditer(
            r"(?:python3?|torchrun(?: --\S+)*) (recipes/\S+\.py|benchmarks/\S+\.py)([^#;&|]*)", line
        ):
            try:
                arguments = shlex.split(match.group(2))
            except ValueError:  # an unbalanced quote in a shortened example
                arguments = match.group(2).split()
            yield match.group(1), arguments


def options_of(arguments):
    return [a[2:].split("=", 1)[0] for a in arguments if a.startswith("--")]


@pytest.mark.parametrize("page", [os.path.relpath(p, ROOT) if os.path.isabs(p) else p for p in PAGES])
def test_every_path_a_page_names_exists(page):
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    missing = sorted(
        {path for path in PATH.findall(text) if path not in ELSEWHERE and not os.path.exists(os.path.join(ROOT, path))}
    )
    assert missing == []


def recipe_keys(script, hparams_file):
    """The settings a recipe's command can override: those of its hparams file."""
    with open(os.path.join(ROOT, hparams_file)) as f:
        return top_level_keys(f.read())


@pytest.mark.parametrize("page", [os.path.relpath(p, ROOT) if os.path.isabs(p) else p for p in PAGES])
def test_every_command_a_page_shows_takes_its_options(page):
    run_options = {field.name for field in dataclasses.fields(sb.core.RunOptions)} | {"param_file", "log_config"}
    problems = []
    for script, arguments in commands(page):
        path = os.path.join(ROOT, script)
        if not os.path.isfile(path):
            problems.append(f"{script}: no such script")
            continue
        if script.startswith("recipes/") and script.endswith(("train.py", "cross_validate.py")):
            hparams = next((a for a in arguments if a.endswith(".yaml") and not a.startswith("--")), None)
            if hparams is None:
                continue
            if not os.path.isfile(os.path.join(ROOT, hparams)):
                problems.append(f"{script}: {hparams} does not exist")
                continue
            allowed = recipe_keys(script, hparams) | run_options | {"folds"}
        else:
            with open(path) as f:
                allowed = set(re.findall(r'add_argument\(\s*"--([\w-]+)"', f.read()))
            allowed |= {a.replace("-", "_") for a in allowed}
        problems += [f"{script} --{option}" for option in options_of(arguments) if option not in allowed]
    assert problems == []
