"""``onnx.json`` is read as untrusted input: every tampered file is a one-line error naming it, before any value
sizes a buffer or a precision is silently ignored."""

import json

import pytest

from speechbrain_datar.errors import DataError
from speechbrain_datar.inference.onnx_runtime import ONNX_META, read_onnx_meta
from speechbrain_datar.testing.hostile_media import onnx_meta

#: What the export writes for a one-head DATAR.
VALID = onnx_meta()


def tampered():
    cases = {f"no {key}": {k: v for k, v in VALID.items() if k != key} for key in ONNX_META}
    cases.update(
        {
            "sample_rate 1e9": dict(VALID, sample_rate=1e9),
            "n_fft 1e9": dict(VALID, n_fft=10**9),
            "precision int4": dict(VALID, precision="int4"),
            "labels a list": dict(VALID, labels=["dog", "rain"]),
            "hop longer than the window": dict(VALID, hop_frames=5000),
            "threshold 2": dict(VALID, threshold=2.0),
            "sample_rate true": dict(VALID, sample_rate=True),
            "outputs for two heads, one head": dict(VALID, outputs=["a", "b"]),
        }
    )
    return cases


@pytest.mark.parametrize("case", sorted(tampered()) + ["invalid JSON", "a JSON list", "1e999", "nested 10000 deep"])
def test_a_tampered_onnx_json_is_one_line(tmp_path, case):
    texts = {
        "invalid JSON": '{"sample_rate": ',
        "a JSON list": "[1, 2]",
        "1e999": json.dumps(VALID).replace('"threshold": 0.5', '"threshold": 1e999'),
        "nested 10000 deep": '{"labels": ' + "[" * 10000 + "]" * 10000 + "}",
    }
    (tmp_path / "onnx.json").write_text(texts.get(case) or json.dumps(tampered()[case]))
    with pytest.raises(DataError) as error:
        read_onnx_meta(str(tmp_path))
    assert "onnx.json" in str(error.value) and "\n" not in str(error.value)


def test_the_exported_metadata_passes(tmp_path):
    (tmp_path / "onnx.json").write_text(json.dumps(VALID))
    assert read_onnx_meta(str(tmp_path)) == VALID
