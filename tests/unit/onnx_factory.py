"""Tiny, valid ONNX files following models/README.md, for registry and pipeline tests.

They are made with onnx.helper (a 1x1 convolution), not trained: only the contract is under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEGMENTATION_LABELS = ["background", "lobe_image_left", "lobe_image_right"]


def metadata(task: str, version: str, *, labels: list[str], size: int = 32) -> dict[str, str]:
    """metadata_props of the contract."""
    return {
        "task": task, "name": f"tiny-{task}", "version": version,
        "input_size": json.dumps([size, size]),
        "normalisation": json.dumps({"method": "percentile", "percentile": 99.5, "clip": 2.0}),
        "labels": json.dumps(labels),
        "output_activation": "softmax" if len(labels) > 1 else "sigmoid",
        "thresholds": json.dumps({"probability": 0.5, "min_area_px": 1}),
        "training_data": "none: a test fixture", "metrics": json.dumps({}),
    }


def write_model(path: Path, *, task: str = "thyroid-segmentation", version: str = "1.0.0",
                labels: list[str] | None = None, size: int = 32, props: dict[str, str] | None = None) -> Path:
    """Write a 1x1-convolution model with ``len(labels)`` output channels."""
    labels = labels or SEGMENTATION_LABELS
    channels = len(labels)
    weights = numpy_helper.from_array(np.linspace(-1, 1, channels, dtype=np.float32).reshape(channels, 1, 1, 1), "w")
    node = helper.make_node("Conv", ["image", "w"], ["logits"])
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, channels, size, size])],
        [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entries = props if props is not None else metadata(task, version, labels=labels, size=size)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path
