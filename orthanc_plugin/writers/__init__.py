"""Writers: findings to DICOM, one function per output, each ``write_x(source, findings, uids)``.

``write_sc`` renders an RGB Secondary Capture overlay, ``write_seg`` a DICOM Segmentation and
``write_sr`` a TID 1500 Comprehensive 3D SR. Each returns a pydicom Dataset in the source's study,
in the series named by ``uids``, and raises :class:`orthanc_plugin.errors.WriterError` when the
result cannot be encoded.
"""

from orthanc_plugin.writers.sc import write_sc
from orthanc_plugin.writers.seg import write_seg
from orthanc_plugin.writers.sr import write_sr

__all__ = ["write_sc", "write_seg", "write_sr"]
