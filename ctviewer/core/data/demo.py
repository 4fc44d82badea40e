"""Synthetic CT phantoms written as real DICOM: the bundled demo dataset.

Each "patient" is an axial series through a simple body: fat and muscle walls, two
lungs, a spine, a liver, kidneys and the aorta. Class ``contrast`` has iodine in the
blood (aorta and kidneys enhanced to about 130-300 HU, liver +20-40 HU); class
``no_contrast`` has blood at 35-55 HU. Enhancement, anatomy, noise and position vary,
so the finding is visible in a soft-tissue window but not a single-pixel giveaway.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CLASSES = ("contrast", "no_contrast")
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_DEMO_VERSION = 1


def phantom_slice(rng: np.random.Generator, size: int, contrast: bool, z: float) -> np.ndarray:
    """One axial slice in Hounsfield units (float32, size x size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = 0.5 + rng.normal(0, 0.02), 0.52 + rng.normal(0, 0.02)
    ax, ay = 0.40 + rng.normal(0, 0.02), 0.30 + rng.normal(0, 0.02)
    img = np.full((size, size), -1000.0, dtype=np.float32)  # air

    def ellipse(x0: float, y0: float, rx: float, ry: float) -> np.ndarray:
        return ((xx - x0) / rx) ** 2 + ((yy - y0) / ry) ** 2 <= 1.0

    img[ellipse(cx, cy, ax, ay)] = -100.0  # subcutaneous fat
    img[ellipse(cx, cy, ax - 0.03, ay - 0.03)] = 45.0  # muscle / soft tissue
    upper = z < 0.5  # upper slices cut the lungs, lower ones the abdomen
    if upper:
        for side in (-1, 1):
            img[ellipse(cx + side * 0.17, cy - 0.02, 0.12, 0.17)] = -820.0 + rng.normal(0, 20)
    else:
        liver = ellipse(cx - 0.14, cy - 0.02, 0.16, 0.14)
        img[liver] = 55.0 + (rng.uniform(20, 40) if contrast else 0.0)
        kidney_hu = rng.uniform(150, 260) if contrast else rng.uniform(30, 45)
        for side in (-1, 1):
            img[ellipse(cx + side * 0.15, cy + 0.12, 0.045, 0.06)] = kidney_hu
    img[ellipse(cx, cy + 0.20, 0.055, 0.05)] = 700.0 + rng.normal(0, 50)  # vertebra
    img[ellipse(cx, cy + 0.20, 0.025, 0.022)] = 250.0  # cancellous core
    blood = rng.uniform(130, 300) if contrast else rng.uniform(35, 55)
    img[ellipse(cx + 0.03 + rng.normal(0, 0.01), cy + 0.08, 0.035, 0.035)] = blood  # aorta
    noise = rng.normal(0.0, 12.0, size=img.shape).astype(np.float32)
    return img + noise


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["ctviewer-demo", *map(str, parts)])


def write_ct_dicom(path: Path, hu: np.ndarray, patient: str, study: str, series: str, instance: int,
                   z_mm: float, spacing_mm: float = 0.7, contrast_agent: str = "") -> None:
    """Write a single-frame CT DICOM (uint16 stored, intercept -1024) with the usual headers."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sop_uid = _uid(patient, series, instance)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = _CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "CT"
    ds.Manufacturer = "ctviewer phantom"
    ds.PatientName = patient
    ds.PatientID = patient
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyDescription = "Synthetic phantom (ctviewer demo)"
    ds.SeriesDescription = "Axial"
    if contrast_agent:
        ds.ContrastBolusAgent = contrast_agent
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z_mm)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = float(z_mm)
    ds.SliceThickness = 5.0
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    stored = np.clip(np.round(hu + 1024.0), 0, 4095).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def make_demo_dataset(folder: str | Path, n_patients: int = 8, slices_per_patient: int = 3,
                      size: int = 256, seed: int = 0) -> Path:
    """Write ``n_patients`` per class, each one series of ``slices_per_patient`` slices.

    Layout: ``folder/<class>/<patient>/IM_<n>.dcm``. Deterministic for a seed.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for class_index, name in enumerate(CLASSES):
        contrast = name == "contrast"
        for p in range(n_patients):
            patient = f"DEMO-{class_index}{p:03d}"
            study, series = _uid(patient, "study"), _uid(patient, "series")
            patient_dir = folder / name / patient
            patient_dir.mkdir(parents=True, exist_ok=True)
            z0 = rng.uniform(0.1, 0.7)
            for s in range(slices_per_patient):
                z = z0 + 0.1 * s
                hu = phantom_slice(rng, size, contrast, z)
                write_ct_dicom(patient_dir / f"IM_{s + 1:04d}.dcm", hu, patient, study, series, s + 1,
                               z_mm=-z * 300.0, contrast_agent="IOHEXOL" if contrast and s == 0 else "")
    return folder


def demo_dataset_dir(root: str | Path | None = None) -> Path:
    """The demo dataset folder, generated on first use (in the user cache unless ``root`` is given)."""
    from ctviewer.core.data.cache import default_cache_dir

    folder = Path(root) if root is not None else default_cache_dir() / f"demo-v{_DEMO_VERSION}"
    marker = folder / ".complete"
    if not marker.exists():
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        make_demo_dataset(tmp)
        (tmp / ".complete").write_text("ctviewer demo dataset\n")
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        os.replace(tmp, folder)
    return folder


def demo_arrays(n_patients: int = 8, slices_per_patient: int = 3, size: int = 64,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo slices as a notebook user holds them: ``(x, y, patients)`` sorted by class.

    ``x`` is (N, size, size) float32 in Hounsfield units; ``y`` is 1 for contrast, 0 for
    no contrast; all contrast slices come first, as when arrays are filled class folder by
    class folder (the order that makes Keras' ``validation_split`` validate on one class).
    """
    rng = np.random.default_rng(seed)
    images, labels, patients = [], [], []
    for class_index, name in enumerate(CLASSES):
        contrast = name == "contrast"
        for p in range(n_patients):
            z0 = rng.uniform(0.1, 0.7)
            for s in range(slices_per_patient):
                images.append(phantom_slice(rng, size, contrast, z0 + 0.1 * s))
                labels.append(int(contrast))
                patients.append(f"DEMO-{class_index}{p:03d}")
    return np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64), np.asarray(patients)
