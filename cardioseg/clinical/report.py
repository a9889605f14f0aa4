"""The clinical indices of one study as a JSON record and as a plain-text report a person reads.

Why: the numbers must reach both programs (JSON: units in the key names, the study's UIDs, where they came
from) and the clinician (an aligned table with the method and its limits). The report is made from the record,
so both say the same. JSON has no NaN: an index that could not be measured (an EF with no RV found, a
volume index without the patient's height) is null in JSON and "n/a" in the report. Indexed values and
cardiac output come from the headers' body size and heart rate (:mod:`cardioseg.clinical.body`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..data.dicom_cine import CineSeries
from ..data.phantom import MYOCARDIUM_G_PER_ML
from ..errors import CardiosegError
from .body import BodySize, body_size
from .indices import CardiacIndices

METHOD = "summation of discs on the short-axis stack, ED/ES from the LV volume curve"
DISCLAIMER = (
    "For research use only. Not a medical device: not for diagnosis or treatment decisions. "
    "The segmentation is automatic; check the contours before using any number."
)
# (record key, label, unit) in report order
_ROWS = (
    ("lvedv_ml", "LV end-diastolic volume", "ml"),
    ("lvesv_ml", "LV end-systolic volume", "ml"),
    ("lvsv_ml", "LV stroke volume", "ml"),
    ("lvef_percent", "LV ejection fraction", "%"),
    ("rvedv_ml", "RV end-diastolic volume", "ml"),
    ("rvesv_ml", "RV end-systolic volume", "ml"),
    ("rvsv_ml", "RV stroke volume", "ml"),
    ("rvef_percent", "RV ejection fraction", "%"),
    ("lv_mass_g", f"LV mass (ED, {MYOCARDIUM_G_PER_ML} g/ml)", "g"),
)
# (record key, the key it indexes by BSA, label, unit)
_INDEXED_ROWS = (
    ("lvedvi_ml_per_m2", "lvedv_ml", "LV EDV index", "ml/m2"),
    ("lvesvi_ml_per_m2", "lvesv_ml", "LV ESV index", "ml/m2"),
    ("lvsvi_ml_per_m2", "lvsv_ml", "LV stroke volume index", "ml/m2"),
    ("rvedvi_ml_per_m2", "rvedv_ml", "RV EDV index", "ml/m2"),
    ("rvesvi_ml_per_m2", "rvesv_ml", "RV ESV index", "ml/m2"),
    ("rvsvi_ml_per_m2", "rvsv_ml", "RV stroke volume index", "ml/m2"),
    ("lv_mass_index_g_per_m2", "lv_mass_g", "LV mass index", "g/m2"),
)
_OUTPUT_ROWS = (
    ("lv_cardiac_output_l_per_min", "LV cardiac output", "l/min"),
    ("lv_cardiac_index_l_per_min_per_m2", "LV cardiac index", "l/min/m2"),
)


def _finite(value):
    """``value`` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def indices_record(indices: CardiacIndices, series: CineSeries, *, provenance: dict) -> dict:
    """A JSON-able record of ``indices`` measured on ``series``; NaN becomes None, ``provenance`` is kept as is.

    Phases are given both as 0-based indices into the frames and as 1-based frame numbers; the trigger time
    of a frame is its median over the slices.
    """
    trigger_ms = np.median(series.trigger_times, axis=1)
    body = body_size(series.reference)

    def phase(index: int) -> dict:
        return {"phase_index": index, "frame_number": index + 1, "trigger_time_ms": float(trigger_ms[index])}

    slice_mm, row_mm, col_mm = series.spacing
    record = {
        "patient_id": series.patient_id,
        "study_instance_uid": series.study_uid,
        "series_instance_uid": series.series_uid,
        "series_description": str(series.reference.get("SeriesDescription", "")),
        "n_frames": series.n_frames,
        "n_slices": int(series.pixels.shape[1]),
        "ed": phase(indices.ed_phase),
        "es": phase(indices.es_phase),
        **{key: float(getattr(indices, key)) for key, _, _ in _ROWS},
        **_by_body(indices, body),
        "body": body.describe(),
        "myocardium_density_g_per_ml": MYOCARDIUM_G_PER_ML,
        "trigger_times_ms": [float(t) for t in trigger_ms],
        "lv_volume_curve_ml": [float(v) for v in indices.lv_volume_curve_ml],
        "rv_volume_curve_ml": [float(v) for v in indices.rv_volume_curve_ml],
        "spacing_mm": {"slice": float(slice_mm), "row": float(row_mm), "column": float(col_mm)},
        "method": METHOD,
    }
    return {**_finite(record), "provenance": provenance}


def _by_body(indices: CardiacIndices, body: BodySize) -> dict[str, float | None]:
    """Volumes and mass per m² of body surface area, and LV output (stroke volume x heart rate); None where
    the headers lack what they need."""
    bsa, rate = body.bsa_m2, body.heart_rate_bpm
    values = {key: (getattr(indices, of) / bsa if bsa else None) for key, of, _, _ in _INDEXED_ROWS}
    output = indices.lvsv_ml * rate / 1000.0 if rate else None
    values["lv_cardiac_output_l_per_min"] = output
    values["lv_cardiac_index_l_per_min_per_m2"] = output / bsa if output is not None and bsa else None
    return values


def _body_line(body: dict) -> str:
    """How the indexed values were made, or why they are missing."""
    parts = []
    if body["bsa_m2"] is not None:
        parts.append(
            f"BSA {body['bsa_m2']:.2f} m2 ({body['bsa_formula']}; height {body['height_m']:.2f} m, "
            f"weight {body['weight_kg']:.1f} kg)"
        )
    if body["heart_rate_bpm"] is not None:
        parts.append(f"heart rate {body['heart_rate_bpm']:.0f} /min (from {body['heart_rate_source']})")
    lead = "Indexed by: " if parts else "Not indexed: "
    return lead + "; ".join(parts + body["notes"]) + "."


def write_indices_json(record: dict, path: str | Path) -> Path:
    """Write ``record`` as indented JSON; NaN or infinity anywhere becomes null."""
    try:
        text = json.dumps(_finite(record), indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CardiosegError(f"the indices record cannot be written as JSON: {exc}") from exc
    path = Path(path)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _number(value, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _phase_line(name: str, phase: dict, n_frames: int) -> str:
    return (
        f"{name:<20} frame {phase['frame_number']} of {n_frames} (phase index {phase['phase_index']}), "
        f"trigger time {_number(phase['trigger_time_ms'], 0)} ms"
    )


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts as one level with dotted keys (``model.sha256``), for one line per value."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def report_text(record: dict) -> str:
    """The plain-text report of an ``indices_record``."""
    spacing = record["spacing_mm"]
    lines = [
        "cardioseg cardiac MRI report",
        "=" * 28,
        f"{'Patient ID':<20} {record['patient_id']}",
        f"{'Study UID':<20} {record['study_instance_uid']}",
        f"{'Series UID':<20} {record['series_instance_uid']}",
        f"{'Series':<20} {record['series_description'] or 'n/a'}",
        "",
        _phase_line("End-diastole (ED)", record["ed"], record["n_frames"]),
        _phase_line("End-systole (ES)", record["es"], record["n_frames"]),
        "",
        f"{'Index':<32}{'Value':>9}  Unit",
        f"{'-' * 32}{'-' * 9}  ----",
    ]
    lines += [f"{label:<32}{_number(record[key]):>9}  {unit}" for key, label, unit in _ROWS]
    lines += [""] + [f"{label:<32}{_number(record[key]):>9}  {unit}" for key, _, label, unit in _INDEXED_ROWS]
    lines += [f"{label:<32}{_number(record[key], 2):>9}  {unit}" for key, label, unit in _OUTPUT_ROWS]
    lines += [_body_line(record["body"])]
    curves = {"LV ml": record["lv_volume_curve_ml"], "RV ml": record["rv_volume_curve_ml"]}
    lines += ["", "Volume curves", f"{'frame':>5}  {'time ms':>8}" + "".join(f"  {name:>8}" for name in curves)]
    for f, time in enumerate(record["trigger_times_ms"]):
        values = "".join(f"  {_number(curve[f]):>8}" for curve in curves.values())
        marks = " ED" * (f == record["ed"]["phase_index"]) + " ES" * (f == record["es"]["phase_index"])
        lines.append(f"{f + 1:>5}  {_number(time, 0):>8}{values}{marks}")
    lines += [
        "",
        f"Method: {record['method']}; voxel spacing {spacing['slice']:.2f} x {spacing['row']:.2f} x "
        f"{spacing['column']:.2f} mm (slice x row x column); LV mass = ED myocardial volume x "
        f"{record['myocardium_density_g_per_ml']} g/ml.",
    ]
    provenance = _flatten(record.get("provenance") or {})
    if provenance:
        lines += ["", "Provenance"]
        width = max(len(key) for key in provenance)
        lines += [f"  {key:<{width}}  {value}" for key, value in provenance.items()]
    lines += ["", DISCLAIMER]
    return "\n".join(lines) + "\n"


def write_report(record: dict, path: str | Path) -> Path:
    """Write the plain-text report of ``record`` (see ``report_text``)."""
    path = Path(path)
    path.write_text(report_text(record), encoding="utf-8")
    return path
