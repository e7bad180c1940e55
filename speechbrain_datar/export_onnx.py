"""``python -m speechbrain_datar.export_onnx``: version 0.2's path of ``speechbrain_datar.pretrained.onnx_export``."""

from speechbrain_datar.pretrained.onnx_export import (
    OPSET,
    ClassifierGraph,
    FeatureGraph,
    export_onnx,
    load_exported,
    main,
)

__all__ = ["OPSET", "ClassifierGraph", "FeatureGraph", "export_onnx", "load_exported", "main"]

if __name__ == "__main__":
    main()
