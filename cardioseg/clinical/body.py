"""Body size and heart rate from the DICOM headers: what cardiac MRI reports index volumes and mass by.

Why: reference ranges of ventricular volumes and mass are per m² of body surface area (BSA), and cardiac
output is stroke volume times heart rate; a report without them sends the reader to a calculator. The
scanner records height (``PatientSize``, in metres), weight (``PatientWeight``, kg) and the heart rate
during the scan (``HeartRate``, or the R-R interval ``NominalInterval`` in ms). BSA is Mosteller's formula,
the one SCMR's reference values use. A value that is missing or not plausible for an adult or child (a
height typed in centimetres) is left out, with the reason, and the indices that need it are not reported.
No library reads these, so they are read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydicom.dataset import Dataset

# Plausible ranges: outside them a value is more likely a unit or typing error than a patient.
_HEIGHT_M = (0.4, 2.6)
_WEIGHT_KG = (2.0, 400.0)
_HEART_RATE_BPM = (20.0, 250.0)


@dataclass(frozen=True)
class BodySize:
    """What the headers say, in the report's units; None where absent or implausible (see ``notes``)."""

    height_m: float | None
    weight_kg: float | None
    heart_rate_bpm: float | None
    heart_rate_source: str | None  # the tag it came from
    notes: tuple[str, ...]  # why a value was left out

    @property
    def bsa_m2(self) -> float | None:
        """Mosteller: sqrt(height cm x weight kg / 3600)."""
        if self.height_m is None or self.weight_kg is None:
            return None
        return math.sqrt(self.height_m * 100.0 * self.weight_kg / 3600.0)

    def describe(self) -> dict:
        return {
            "height_m": self.height_m,
            "weight_kg": self.weight_kg,
            "bsa_m2": self.bsa_m2,
            "bsa_formula": "Mosteller",
            "heart_rate_bpm": self.heart_rate_bpm,
            "heart_rate_source": self.heart_rate_source,
            "notes": list(self.notes),
        }


def _value(header: Dataset, tag: str, unit: str, bounds: tuple[float, float], notes: list[str]) -> float | None:
    raw = header.get(tag)
    if raw in (None, ""):
        notes.append(f"no {tag} in the headers")
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and bounds[0] <= value <= bounds[1]):
        shown = f"{value:g}" if math.isfinite(value) else repr(str(raw))
        notes.append(f"{tag} {shown} is not a plausible value in {unit} ({bounds[0]:g}-{bounds[1]:g}): left out")
        return None
    return value


def body_size(header: Dataset) -> BodySize:
    """Height, weight and heart rate of the study's patient from one image header."""
    notes: list[str] = []
    height = _value(header, "PatientSize", "m", _HEIGHT_M, notes)
    weight = _value(header, "PatientWeight", "kg", _WEIGHT_KG, notes)
    rate_notes: list[str] = []  # kept only when neither tag gives a rate
    rate, source = _value(header, "HeartRate", "beats/min", _HEART_RATE_BPM, rate_notes), "HeartRate"
    if rate is None:
        rr_ms = (60000 / _HEART_RATE_BPM[1], 60000 / _HEART_RATE_BPM[0])
        interval = _value(header, "NominalInterval", "ms", rr_ms, rate_notes)
        rate, source = (None, None) if interval is None else (60000.0 / interval, "NominalInterval")
    return BodySize(height, weight, rate, source, tuple(notes + (rate_notes if rate is None else [])))
