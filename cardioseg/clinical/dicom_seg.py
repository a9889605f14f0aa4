"""Write a cine segmentation as one DICOM Segmentation (SEG) instance covering every phase and slice.

Why: a DICOM SEG is what PACS and viewers store beside the images, so the contours travel with the study.
highdicom writes the SEG modules (patient, study, equipment, segment descriptions, geometry) but refuses
source images that share a position (highdicom issues #174 and #369: it indexes frames by position only),
and a cine series has one instance per slice *and* phase. So highdicom builds the SEG of the first phase,
and its per-frame items are then repeated for every phase with a third dimension, Temporal Position Index
(Frame Content Sequence), as enhanced MR cine does: frames are indexed by (segment, phase, slice position).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from .. import __version__
from ..data.dicom_cine import CineSeries, dcmread_strict
from ..errors import CardiosegError, DataError
from ..visualize import LABEL_COLOURS

# ACDC label value = segment number; category from CID 7150, types from CID 7151 (the myocardium code is
# from CID 12305: CID 7151 has no LV myocardium, and its list is extensible).
SEGMENTS = (
    (1, "RV cavity", codes.SCT.RightVentricle),
    (2, "LV myocardium", codes.SCT.LeftVentricleMyocardium),
    (3, "LV cavity", codes.SCT.LeftVentricle),
)
SERIES_DESCRIPTION = "cardioseg segmentation"
_HEADER_TAGS = ["SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"]


def write_dicom_seg(
    series: CineSeries,
    labels: np.ndarray,
    path: str | Path,
    *,
    algorithm_name: str,
    algorithm_version: str,
    model_sha256: str | None = None,
    series_number: int | None = None,
) -> Path:
    """Write ``labels`` ``(frames, slices, rows, cols)`` (ACDC values) of ``series`` as a BINARY SEG at ``path``.

    One segment per structure, AUTOMATIC, identified by ``algorithm_name``/``algorithm_version`` (and the
    model's SHA-256 as an algorithm parameter). Empty frames are left out; a structure found nowhere keeps
    one empty frame, so each segment still has a frame. ``series_number`` defaults to the source's + 1000.
    """
    labels = np.asarray(labels)
    if labels.shape != series.pixels.shape:
        raise CardiosegError(f"labels have shape {labels.shape}, the series {series.pixels.shape}")
    if labels.size and labels.max() > len(SEGMENTS):
        raise CardiosegError(f"labels hold value {int(labels.max())}; ACDC labels are 0..{len(SEGMENTS)}")
    first_phase = [_as_source(dcmread_strict(p, stop_before_pixels=True), series) for p in series.files[0]]
    uids = [[_sop_uids(p, ds) for p, ds in zip(series.files[0], first_phase, strict=True)]]
    uids += [[_sop_uids(p) for p in phase] for phase in series.files[1:]]
    template = _first_phase_seg(
        series, first_phase, labels[0], algorithm_name, algorithm_version, model_sha256, series_number
    )
    _add_phases(template, labels, uids)
    template.save_as(path, enforce_file_format=True)
    return Path(path)


def _as_source(ds: Dataset, series: CineSeries) -> Dataset:
    """The source header mended where highdicom would refuse it (this copy only, never the file).

    A missing SliceThickness (anonymisers often strip it; highdicom copies it into the SEG's pixel measures)
    becomes the stack's slice step. A misspelt SpecificCharacterSet ("ISO IR 100"), which pydicom decoded
    anyway, becomes UTF-8: the text is decoded already, and UTF-8 carries any of it.
    """
    if ds.get("SliceThickness") in (None, ""):
        ds.SliceThickness = round(series.spacing[0], 4)
    charsets = ds.get("SpecificCharacterSet")
    if charsets and any(value not in python_encoding for value in np.atleast_1d(charsets)):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _sop_uids(path: Path, ds: Dataset | None = None) -> tuple[str, str]:
    """(SOP class, SOP instance) UIDs of a source instance."""
    if ds is None:
        ds = dcmread_strict(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        raise DataError(path, "has no SOPInstanceUID or SOPClassUID: a SEG cannot reference it")
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def _segment_descriptions(name: str, version: str, model_sha256: str | None) -> list[hd.seg.SegmentDescription]:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=name,
        family=codes.DCM.ArtificialIntelligence,
        version=version,
        parameters={"model_sha256": model_sha256} if model_sha256 else None,
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_string(LABEL_COLOURS[number]),
        )
        for number, label, code in SEGMENTS
    ]


def _first_phase_seg(
    series: CineSeries,
    sources: list[Dataset],
    labels: np.ndarray,
    name: str,
    version: str,
    model_sha256: str | None,
    series_number: int | None,
) -> hd.seg.Segmentation:
    """highdicom's SEG of phase 0 with a frame for every (segment, slice), used as the template."""
    if series_number is None:
        series_number = 1000 + int(series.reference.get("SeriesNumber") or 0)
    with warnings.catch_warnings():  # the source's PatientName is copied as it is, one component or not
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        try:
            return hd.seg.Segmentation(
                source_images=sources,
                pixel_array=labels,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=_segment_descriptions(name, version, model_sha256),
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="cardioseg",
                manufacturer_model_name=name,
                software_versions=[f"cardioseg {__version__}", f"{name} {version}"],
                device_serial_number=(model_sha256 or "0")[:16],
                content_description="RV cavity, LV myocardium and LV cavity in every cardiac phase",
                content_label="CARDIOSEG",
                series_description=SERIES_DESCRIPTION,
                omit_empty_frames=False,
            )
        except ValueError as exc:  # highdicom's checks on the sources (study, frame of reference, size)
            raise DataError(series.folder, f"cannot build a DICOM SEG on this series: {exc}") from exc


def _add_phases(seg: hd.seg.Segmentation, labels: np.ndarray, uids: list[list[tuple[str, str]]]) -> None:
    """Repeat the template's per-frame items for every phase, add the temporal dimension, set the pixels."""
    n_frames, n_slices = labels.shape[:2]
    slice_of = {uids[0][s][1]: s for s in range(n_slices)}
    template: dict[tuple[int, int], Dataset] = {}
    for item in seg.PerFrameFunctionalGroupsSequence:
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        template[segment, slice_of[source]] = item
    position_index = {s: int(item.FrameContentSequence[0].DimensionIndexValues[1]) for (_, s), item in template.items()}

    items, masks = [], []
    for segment, _, _ in SEGMENTS:
        present = labels == segment
        keep = present.any(axis=(2, 3))
        if not keep.any():  # a structure found nowhere: one empty frame, so the segment is still described
            keep[0, n_slices // 2] = True
        for f in range(n_frames):
            for s in sorted(np.flatnonzero(keep[f]), key=position_index.get):
                items.append(_frame_item(template[segment, s], uids[f][s], [segment, f + 1, position_index[s]]))
                masks.append(present[f, s])

    seg.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    seg.NumberOfFrames = len(items)
    seg.PixelData = pack_bits(np.stack(masks).astype(np.uint8))
    _add_temporal_dimension(seg)
    _reference_all(seg, uids)


def _with(ds: Dataset, **values) -> Dataset:
    """A new dataset holding ``ds``'s elements (shared, not copied) with ``values`` set on top."""
    out = Dataset()
    for element in ds:
        if element.keyword not in values:  # setting a shared element would change it in ``ds`` too
            out[element.tag] = element
    for keyword, value in values.items():
        setattr(out, keyword, value)
    return out


def _frame_item(template: Dataset, uids: tuple[str, str], index_values: list[int]) -> Dataset:
    """The template's per-frame item pointing at another source instance, at another temporal position.

    Built from shared elements: a deep copy of ~600 items took seconds, and only two values differ.
    """
    derivation = template.DerivationImageSequence[0]
    source = _with(derivation.SourceImageSequence[0], ReferencedSOPClassUID=uids[0], ReferencedSOPInstanceUID=uids[1])
    content = _with(
        template.FrameContentSequence[0], DimensionIndexValues=index_values, TemporalPositionIndex=index_values[1]
    )
    return _with(
        template,
        DerivationImageSequence=[_with(derivation, SourceImageSequence=[source])],
        FrameContentSequence=[content],
    )


def _add_temporal_dimension(seg: hd.seg.Segmentation) -> None:
    """Insert Temporal Position Index between the segment and position dimensions."""
    dims = list(seg.DimensionIndexSequence)
    temporal = Dataset()
    temporal.DimensionOrganizationUID = dims[0].DimensionOrganizationUID
    temporal.DimensionIndexPointer = tag_for_keyword("TemporalPositionIndex")
    temporal.FunctionalGroupPointer = tag_for_keyword("FrameContentSequence")
    temporal.DimensionDescriptionLabel = "Temporal Position Index"
    seg.DimensionIndexSequence = DicomSequence([dims[0], temporal, *dims[1:]])


def _reference_all(seg: hd.seg.Segmentation, uids: list[list[tuple[str, str]]]) -> None:
    """List every source instance of every phase in the instance-level references."""

    def reference(sop_class: str, sop_instance: str) -> Dataset:
        ds = Dataset()
        ds.ReferencedSOPClassUID, ds.ReferencedSOPInstanceUID = sop_class, sop_instance
        return ds

    every = [pair for phase in uids for pair in phase]
    seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence = DicomSequence([reference(*p) for p in every])
    if "SourceImageSequence" in seg:
        seg.SourceImageSequence = DicomSequence([reference(*p) for p in every])
