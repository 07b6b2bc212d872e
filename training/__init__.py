"""Training, export and evaluation of the node's ONNX models on synthetic thyroid phantoms."""
