"""A study's measured indices beside the phantom's true ones, with stated tolerances.

Why: the phantom is the one cohort whose true volumes are known (its ``ground_truth.json``, measured on the
label masks it was drawn from), so the whole chain from DICOM to an ejection fraction can be checked
against numbers nobody typed in. Tolerances: volumes within 10 % and ejection fractions within 5 percentage
points, the agreement cardiac MRI readers reach with each other; LV mass within 20 %, since the thin
myocardium loses most to a coarse model input (the demo segments at 96 x 96).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

VOLUME_TOLERANCE = 0.10  # relative
EF_TOLERANCE_POINTS = 5.0  # percentage points
MASS_TOLERANCE = 0.20  # relative


@dataclass(frozen=True)
class Comparison:
    index: str
    measured: float
    true: float
    tolerance: str
    within: bool

    def line(self) -> str:
        verdict = "ok" if self.within else "OUT OF TOLERANCE"
        numbers = f"{self.measured:>10.1f}{self.true:>10.1f}{self.measured - self.true:>+10.1f}"
        return f"{self.index:<12}{numbers}  {self.tolerance:<8}{verdict}"


def _read(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable JSON ({exc})") from None


def compare_with_truth(indices_json: str | Path, ground_truth_json: str | Path) -> list[Comparison]:
    """Rows of measured against true indices for the patient that ``indices_json`` names."""
    record, truth = _read(Path(indices_json)), _read(Path(ground_truth_json))
    patient = record.get("patient_id")
    try:
        true = truth["patients"][patient]
        ed, es, ef = true["volumes_ml"]["ED"], true["volumes_ml"]["ES"], true["ef"]
        rows = [
            ("LVEDV ml", record["lvedv_ml"], ed["LV"], "volume"),
            ("LVESV ml", record["lvesv_ml"], es["LV"], "volume"),
            ("LVEF %", record["lvef_percent"], 100 * ef["LV"], "ef"),
            ("RVEDV ml", record["rvedv_ml"], ed["RV"], "volume"),
            ("RVESV ml", record["rvesv_ml"], es["RV"], "volume"),
            ("RVEF %", record["rvef_percent"], 100 * ef["RV"], "ef"),
            ("LV mass g", record["lv_mass_g"], true["myo_mass_g"]["ED"], "mass"),
        ]
    except (KeyError, TypeError) as exc:
        raise DataError(ground_truth_json, f"holds no ground truth for patient {patient!r} ({exc})") from None
    comparisons = []
    for name, measured, value, kind in rows:
        measured = float("nan") if measured is None else float(measured)
        if kind == "ef":
            within, tolerance = abs(measured - value) <= EF_TOLERANCE_POINTS, f"±{EF_TOLERANCE_POINTS:g} pts"
        else:
            relative = VOLUME_TOLERANCE if kind == "volume" else MASS_TOLERANCE
            within, tolerance = abs(measured - value) <= relative * value, f"±{relative:.0%}"
        comparisons.append(Comparison(name, measured, float(value), tolerance, bool(within)))
    return comparisons


def comparison_table(comparisons: list[Comparison]) -> str:
    header = f"{'index':<12}{'measured':>10}{'true':>10}{'diff':>10}  {'limit':<8}verdict"
    return "\n".join([header, *(c.line() for c in comparisons)])
