"""The house rules a reader can check with grep: scripts import the package, not each other's folders."""

import glob
import os
import re

from conftest import ROOT


def sources(*patterns):
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            with open(path) as f:
                yield os.path.relpath(path, ROOT), f.read()


def test_benchmarks_and_recipes_do_not_edit_the_import_path():
    offenders = [path for path, text in sources("benchmarks/*.py", "recipes/**/*.py") if "sys.path" in text]
    assert offenders == []


def test_benchmarks_import_their_helpers_from_the_package_and_nothing_from_tests():
    pattern = re.compile(r"^\s*(from|import) (benchmark|long_files|loader|cross_validate|hostile_\w+|conftest)\b", re.M)
    offenders = [path for path, text in sources("benchmarks/*.py") if pattern.search(text)]
    assert offenders == []
    private = re.compile(r"from speechbrain_datar\.[\w.]+ import [^\n]*\b_\w+")
    assert [path for path, text in sources("benchmarks/*.py") if private.search(text)] == []


def test_every_module_function_and_class_has_a_docstring():
    """What SpeechBrain's own docstring check (its ``tests/utils/check_docstrings.py``) asks of its library, over
    the package, the recipes and the benchmarks: every module; every function and method whose name does not
    start with an underscore, nested ones included; every class, private ones included."""
    import ast

    missing = []
    for path, text in sources("speechbrain_datar/**/*.py", "recipes/**/*.py", "benchmarks/*.py"):
        tree = ast.parse(text)
        if os.path.basename(path) != "__init__.py" and ast.get_docstring(tree) is None:
            missing.append(f"{path}: the module")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_"):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if ast.get_docstring(node) is None:
                    missing.append(f"{path}:{node.lineno} {node.name}")
                elif "..." in text.splitlines()[node.body[0].lineno - 1]:
                    # SpeechBrain's check reads line by line and skips lines with "...": it would not see this one
                    missing.append(f"{path}:{node.lineno} {node.name}: '...' on the docstring's first line")
    assert missing == []


def test_one_place_chooses_between_one_result_and_results_by_head():
    # one head's result, or all by name, in either order
    pattern = re.compile(r"next\(iter\(.*\)\) if len\(.*\) == 1 else|if len\(.*\) > 1 else next\(iter\(")
    offenders = [
        path
        for path, text in sources("speechbrain_datar/**/*.py")
        if pattern.search(text) and not path.endswith("inference/adapters.py")
    ]
    assert offenders == []


def test_no_private_torch_hooks_in_the_package():
    assert [path for path, text in sources("speechbrain_datar/**/*.py") if "torch._C" in text] == []


def test_every_benchmark_takes_device():
    offenders = [
        path
        for path, text in sources("benchmarks/*.py")
        if '"--device"' not in text and "add_device_argument(" not in text
    ]
    assert offenders == []


def test_device_option_refuses_what_a_benchmark_or_this_machine_cannot_run(monkeypatch, capsys):
    import argparse

    import pytest
    import torch

    from speechbrain_datar.benchmarking import add_device_argument

    assert add_device_argument(argparse.ArgumentParser()).parse_args([]).device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for parser, message in (
        (add_device_argument(argparse.ArgumentParser()), "no CUDA device is available"),
        (add_device_argument(argparse.ArgumentParser(), cpu_only="decoding runs on the CPU"), "measures the CPU only"),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["--device", "cuda"])
        assert message in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with a GPU still refuses a CPU-only one
    with pytest.raises(SystemExit):
        add_device_argument(argparse.ArgumentParser(), cpu_only="decoding runs on the CPU").parse_args(
            ["--device", "cuda"]
        )


def test_the_version_has_its_changelog_entry():
    import speechbrain_datar

    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        headings = re.findall(r"^## (\S+)", f.read(), re.M)
    assert headings[0] == speechbrain_datar.__version__
