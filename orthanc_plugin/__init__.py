"""Orthanc AI node: header rules, ONNX pipelines and DICOM result writers inside Orthanc.

Only ``entry.py`` and ``adapter.py`` import the ``orthanc`` module; everything else is plain
Python that unit tests import directly.
"""

MANUFACTURER = "Orthanc AI node"
SOFTWARE_VERSION = "0.1.0"
DISCLAIMER = "AI result - adjunct to interpretation, not a substitute"
