"""Export image/mask training pairs of NM thyroid images from an Orthanc server.

``python -m training.mining --url http://127.0.0.1:8042 --out DIR [--study UID ...]
[--query JSON] [--roi-dir DIR] [--salt TEXT]`` finds studies (by StudyInstanceUID, or with
Orthanc's ``/tools/find`` at study level, case-insensitive; a ``Modality`` key is asked as
``ModalitiesInStudy``; default ``{"ModalitiesInStudy": "NM"}``), reads every NM image (NM Image
Storage, or Secondary Capture with Modality NM) and the annotations of the same study, and
writes for each annotated image::

    DIR/<id>/image.npy   float32 counts of the exported frame (anterior photopeak)
    DIR/<id>/mask.png    uint8 labels: 0 background, 1 thyroid, 2 cold nodule
    DIR/<id>/meta.json   id, annotation format, matrix, spacing, frame, labels, notes
    DIR/report.json, DIR/report.md   what was converted, and what was not and why

Annotations, tried in this order, the first that converts is used: a DICOM SEG or an RT
Structure Set in the study that references the image; then, under ``--roi-dir``, a folder
named by the StudyInstanceUID or the AccessionNumber holding ImageJ ``.roi``/``.zip`` files,
else PNG masks (a file whose name says nodule holds the cold nodules). When a study has several
NM images, put each image's files in a subfolder named by its SOPInstanceUID. See
``training/annotations.py`` for labels and geometry.

Pseudonyms: ``<id>`` is the first 16 hex digits of HMAC-SHA256 keyed by the salt of the
StudyInstanceUID and the SOPInstanceUID joined by a backslash (a study alone: the StudyInstanceUID
and a backslash). The salt is ``--salt`` or a random one kept in ``DIR/.salt`` (never logged).
File names, meta.json, reports and logs hold pseudonyms only; reasons and notes are scrubbed of
the study's identifiers and of anything shaped like a UID.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from training import annotations as ann
from training.imagej_roi import RoiFormatError, read_rois
from training.mining_report import Report
from training.orthanc_source import NM_IMAGE, RTSTRUCT, SC_IMAGE, SEG, OrthancClient, pick_frame, referenced_uids

logger = logging.getLogger(__name__)

_UID_LIKE = re.compile(r"\d+(?:\.\d+){3,}")
_ORTHANC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")


def pseudonym(salt: str, study_instance_uid: str, sop_instance_uid: str = "") -> str:
    """Return the 16-hex-digit pseudonym of an image (or, without SOP UID, of a study).

    Examples
    --------
    >>> pseudonym("s", "1.2.3", "1.2.3.4") == pseudonym("s", "1.2.3", "1.2.3.4") != pseudonym("t", "1.2.3", "1.2.3.4")
    True
    >>> len(pseudonym("s", "1.2.3"))
    16
    """
    message = f"{study_instance_uid}\\{sop_instance_uid}".encode()
    return hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()[:16]


def scrubber(datasets: list[Dataset]) -> Callable[[str], str]:
    """Return a function removing the datasets' identifiers (and UID-like strings, Orthanc ids) from a text."""
    secrets_: set[str] = set()
    for ds in datasets:
        for keyword in ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber", "OtherPatientIDs"):
            value = ds.get(keyword)
            if value:
                secrets_.add(str(value))
                secrets_.update(str(getattr(value, part, "")) for part in ("family_name", "given_name"))
    ordered = sorted((s for s in secrets_ if len(s) >= 3), key=len, reverse=True)

    def scrub(text: str) -> str:
        text = _ORTHANC_ID.sub("[orthanc-id]", _UID_LIKE.sub("[uid]", text))
        for secret in ordered:
            text = text.replace(secret, "[redacted]")
        return text
    return scrub


def roi_folders(roi_dir: Path | None, ds: Dataset, images: list[Dataset]) -> tuple[dict[str, Path], str | None]:
    """Map image SOPInstanceUIDs to their annotation folder under ``roi_dir``.

    Returns the mapping and the matched study folder's name (None when there is none).
    """
    if roi_dir is None:
        return {}, None
    for key in (str(ds.StudyInstanceUID), str(ds.get("AccessionNumber", "") or "")):
        folder = roi_dir / key
        if key and folder.is_dir():
            break
    else:
        return {}, None
    found = {str(i.SOPInstanceUID): folder / str(i.SOPInstanceUID) for i in images
             if (folder / str(i.SOPInstanceUID)).is_dir()}
    if not found and len(images) == 1:
        found = {str(images[0].SOPInstanceUID): folder}
    return found, folder.name


def folder_annotation(folder: Path, shape: tuple[int, int], frame_number: int) -> tuple[str, ann.Converted]:
    """Convert the ImageJ ROI files of ``folder``, else its PNG masks; returns (format, result)."""
    roi_files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".roi", ".zip"))
    if roi_files:
        try:
            rois = [pair for path in roi_files for pair in read_rois(path)]
        except RoiFormatError as error:
            raise ann.ConversionError(f"unreadable ImageJ ROI: {error}") from error
        return "imagej", ann.imagej_rois_to_mask(rois, shape, frame_number=frame_number)
    pngs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not pngs:
        raise ann.ConversionError("the ROI folder holds no .roi, .zip or .png file")
    nodules = [p for p in pngs if ann.label_for_name(p.stem)[0] == 2]
    gland = [p for p in pngs if p not in nodules]
    return "png", ann.png_to_mask(gland, nodules, shape)


def mine_study(datasets: list[Dataset], *, salt: str, out: Path, report: Report,
               roi_dir: Path | None = None) -> None:
    """Export the pairs of one study (its NM, SEG and RTSTRUCT instances) into ``out``."""
    scrub = scrubber(datasets)
    study_uid = str(datasets[0].StudyInstanceUID)
    images = [d for d in datasets if d.SOPClassUID == NM_IMAGE
              or (d.SOPClassUID == SC_IMAGE and str(d.get("Modality", "")).upper() == "NM")]
    if not images:
        report.failed("study", pseudonym(salt, study_uid), "no NM image in the study")
        return
    image_uids = {str(i.SOPInstanceUID) for i in images}
    matched: dict[str, list[tuple[str, Dataset]]] = {uid: [] for uid in image_uids}
    for kind, sop_class in (("seg", SEG), ("rtstruct", RTSTRUCT)):
        for annotation in (d for d in datasets if d.SOPClassUID == sop_class):
            refs = referenced_uids(annotation)
            targets = refs & image_uids or (image_uids if not refs and len(images) == 1 else set())
            if not targets:
                report.failed(kind, pseudonym(salt, study_uid, str(annotation.SOPInstanceUID)),
                              "the annotation references no NM image of this study (another image?)")
            for uid in targets:
                matched[uid].append((kind, annotation))
    folders, used_folder = roi_folders(roi_dir, datasets[0], images)
    if used_folder and not folders:
        report.failed("roi-folder", pseudonym(salt, study_uid), "the study has several NM images: put each "
                      "image's files in a subfolder named by its SOPInstanceUID")
    for image in images:
        _mine_image(image, matched[str(image.SOPInstanceUID)], folders.get(str(image.SOPInstanceUID)),
                    salt=salt, out=out, report=report, scrub=scrub)


def _mine_image(image: Dataset, annotations: list[tuple[str, Dataset]], folder: Path | None, *,
                salt: str, out: Path, report: Report, scrub: Callable[[str], str]) -> None:
    """Convert the first usable annotation of one image and write its pair."""
    study_uid, sop_uid = str(image.StudyInstanceUID), str(image.SOPInstanceUID)
    pid = pseudonym(salt, study_uid, sop_uid)
    if not annotations and folder is None:
        report.failed("image", pid, "no annotation found (no SEG or RTSTRUCT referencing it, no ROI folder)")
        return
    try:
        pixels, frame = pick_frame(image)
    except ann.ConversionError as error:
        report.failed("image", pid, scrub(str(error)))
        return
    shape = pixels.shape
    attempts: list[tuple[str, str, Callable[[], tuple[str, ann.Converted]]]] = []
    for kind, ds in annotations:
        convert = ann.seg_to_mask if kind == "seg" else ann.rtstruct_to_mask
        attempts.append((kind, pseudonym(salt, study_uid, str(ds.SOPInstanceUID)),
                         lambda c=convert, d=ds, k=kind: (k, c(d, image, frame_number=frame))))
    if folder is not None:
        attempts.append(("roi-folder", pid, lambda: folder_annotation(folder, shape, frame)))
    for index, (kind, annotation_id, attempt) in enumerate(attempts):
        try:
            fmt, converted = attempt()
        except ann.ConversionError as error:
            report.failed(kind, annotation_id, scrub(str(error)), image=pid)
            continue
        except Exception as error:  # odd data must not stop the export: report it and go on
            report.failed(kind, annotation_id, scrub(f"unexpected {type(error).__name__}: {error}"), image=pid)
            continue
        notes = [scrub(n) for n in converted.notes]
        notes += [f"also annotated as {k}: not used" for k, _, _ in attempts[index + 1:]]
        _write_pair(out / pid, pixels, converted.mask, image, frame, fmt, notes)
        report.converted(pid, fmt, notes, converted.mask)
        return
    report.failed("image", pid, "no annotation could be converted (see the annotation entries)")


def _write_pair(folder: Path, pixels: np.ndarray, mask: np.ndarray, image: Dataset, frame: int,
                fmt: str, notes: list[str]) -> None:
    """Write image.npy, mask.png and meta.json of one pair."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "image.npy", pixels.astype(np.float32))
    Image.fromarray(mask.astype(np.uint8)).save(folder / "mask.png")
    spacing = image.get("PixelSpacing")
    meta = {
        "id": folder.name,
        "source_format": fmt,
        "image_kind": "NM" if image.SOPClassUID == NM_IMAGE else "SC",
        "matrix": list(pixels.shape),
        "pixel_spacing_mm": [float(v) for v in spacing] if spacing else None,
        "frame_number": frame,
        "labels": {str(k): v for k, v in ann.LABELS.items()},
        "label_pixels": {v: int((mask == k).sum()) for k, v in ann.LABELS.items() if k},
        "notes": notes,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _salt(out: Path, given: str | None) -> str:
    """Return the salt: ``given``, else the one in out/.salt, else a new random one stored there."""
    if given:
        return given
    path = out / ".salt"
    if path.exists():
        return path.read_text().strip()
    salt = secrets.token_hex(32)
    path.write_text(salt + "\n")
    path.chmod(0o600)
    return salt


def _mine_studies(client: OrthancClient, study_ids: list[str], *, salt: str, out: Path, report: Report,
                  roi_dir: Path | None) -> set[str]:
    """Mine each study, each in its own ``try``; returns their StudyInstanceUIDs and AccessionNumbers."""
    seen: set[str] = set()
    for study_id in study_ids:
        tags = client.study_tags(study_id)
        study_uid = tags.get("StudyInstanceUID", "")
        seen |= {study_uid, tags.get("AccessionNumber", "")}
        datasets: list[Dataset] = []
        try:
            datasets = client.study_datasets(study_id)
            if not datasets:
                report.failed("study", pseudonym(salt, study_uid), "no NM, SEG or RTSTRUCT series in the study")
                continue
            mine_study(datasets, salt=salt, out=out, report=report, roi_dir=roi_dir)
        except Exception as error:  # one bad study must not stop the export
            reason = scrubber(datasets)(f"unexpected {type(error).__name__}: {error}")
            report.failed("study", pseudonym(salt, study_uid), reason)
    return seen - {""}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m training.mining", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8042", help="Orthanc's REST base URL")
    parser.add_argument("--user", default="orthanc")
    parser.add_argument("--password", default="orthanc")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--study", nargs="+", action="extend", default=[], metavar="UID",
                        help="StudyInstanceUID(s) to export")
    parser.add_argument("--query", type=json.loads, help='study-level query, e.g. {"StudyDescription": "*thyr*"}')
    parser.add_argument("--roi-dir", type=Path, help="folder of per-study ImageJ ROI / PNG mask folders")
    parser.add_argument("--salt", help="pseudonymisation key (default: random, kept in OUT/.salt)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    salt = _salt(args.out, args.salt)
    client = OrthancClient(args.url, args.user, args.password)
    report = Report()
    study_ids: list[str] = []
    for uid in args.study:
        study_id = client.lookup_study(uid)
        if study_id is None:
            report.failed("study", pseudonym(salt, uid), "StudyInstanceUID not found on the server")
        else:
            study_ids.append(study_id)
    if args.query is not None or not args.study:
        study_ids += [s for s in client.find_studies(args.query or {"ModalitiesInStudy": "NM"}) if s not in study_ids]
    logger.info("%d stud(ies) selected", len(study_ids))
    seen = _mine_studies(client, study_ids, salt=salt, out=args.out, report=report, roi_dir=args.roi_dir)
    if args.roi_dir is not None:
        for folder in sorted(p for p in args.roi_dir.iterdir() if p.is_dir() and p.name not in seen):
            report.failed("roi-folder", pseudonym(salt, folder.name), "matches no selected study "
                          "(folder name is neither its StudyInstanceUID nor its AccessionNumber)")
    report.write(args.out)
    print(f"{len(report.pairs)} pair(s) written to {args.out}, {len(report.problems)} item(s) not converted "
          f"(see {args.out / 'report.md'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
