"""Flip test-time augmentation and label post-processing, each on and off, on one trained model.

Evaluates a training run's ``models/model.pt`` on its validation patients with the bundle's evaluation
(``cardioseg.evaluation``, SSL4MIS protocol: 3D Dice and HD95 per volume at native resolution) once per
setting: flip TTA off/on x post-processing none/largest/clean. Reports the mean Dice and HD95 per class,
the paired per-volume Dice change against the plain setting (volumes better / worse) and the seconds each
took, so the evaluation and inference defaults are set by a measurement.

    python -m benchmarks.eval_options --run-dir RUN --dataset-dir ../shared/data/acdc_ssl4mis
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from itertools import product
from pathlib import Path

import numpy as np

from benchmarks.common import table, write_result
from cardioseg.evaluation import read_run_info, run_evaluation
from cardioseg.inference import build_segmenter
from cardioseg.postprocess import POSTPROCESSING

CLASSES = ("RV", "MYO", "LV", "mean")


def score(run_dir: Path, dataset_dir: str, flip_tta: bool, postprocess: str, out: Path) -> dict:
    """One evaluation of the run's model with these settings: summary, per-volume mean Dice, seconds."""
    segmenter = build_segmenter(run_dir / "models" / "model.pt", flip_tta=flip_tta, postprocess=postprocess)
    start = time.perf_counter()
    result = run_evaluation(segmenter, dataset_dir, out, run=read_run_info(run_dir / "data.json"))
    seconds = time.perf_counter() - start
    summary = result["summary"]
    return {
        "flip_tta": flip_tta,
        "postprocess": postprocess,
        **{f"dice_{c}": round(summary["dice"][c]["mean"], 4) for c in CLASSES},
        **{f"hd95_{c}": round(summary["hd95"][c]["mean"], 2) for c in CLASSES},
        "hd95_unit": summary["hd95_unit"],
        "seconds": round(seconds, 1),
        "volume_dice": [v["dice"]["mean"] for v in result["volumes"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a training run's output_dir")
    parser.add_argument("--dataset-dir", default="../shared/data/acdc_ssl4mis")
    parser.add_argument("--name", default="eval_options", help="result file: NAME_<device>.json")
    parser.add_argument("--out-dir", type=Path, help="write the result here (default: benchmarks/results)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="eval_options_") as scratch:
        for i, (flip_tta, postprocess) in enumerate(product((False, True), POSTPROCESSING)):
            rows.append(score(args.run_dir, args.dataset_dir, flip_tta, postprocess, Path(scratch) / str(i)))
            print(f"flip_tta {flip_tta}, postprocess {postprocess}: mean Dice {rows[-1]['dice_mean']}", flush=True)
    plain = np.asarray(rows[0]["volume_dice"])
    for row in rows:
        change = np.asarray(row.pop("volume_dice")) - plain
        row["dice_change_points"] = round(100 * float(change.mean()), 2)
        row["volumes_better_worse"] = f"{int((change > 1e-9).sum())}/{int((change < -1e-9).sum())}"
    columns = ["flip_tta", "postprocess", *(f"dice_{c}" for c in CLASSES), "hd95_mean", "dice_change_points"]
    print(table(rows, [*columns, "volumes_better_worse", "seconds"]))
    settings = {
        "run_dir": str(args.run_dir),
        "trained": json.loads((args.run_dir / "data.json").read_text())["settings"],  # how the model was made
        "dataset_dir": args.dataset_dir,
        "volumes": len(plain),
    }
    print("wrote", write_result(args.name, {"settings": settings, "results": rows}, args.out_dir))


if __name__ == "__main__":
    main()
