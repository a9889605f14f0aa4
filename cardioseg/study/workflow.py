"""The study as one run, as ``experiments/configs/*.json`` drives it: check, pretrain, fine-tune, report.

Making a :class:`Study` checks every setting (the study's, each recipe's and the bundle's), the output
folder and the fine-tuning data (read once, as the runs will); ``prepare`` claims the folder and records the
settings; ``run`` pretrains (stage by stage, since a hierarchical run starts from another's end), fine-tunes
the grid (``slots`` runs at a time, each its own bundle run with its own folder, log and resume) and writes
what it found. A study folder belongs to one study, as a run folder to one run: it is refused if it holds
one, unless ``resume`` (finished runs are read, interrupted ones resumed, the rest run; the grid may grow:
more seeds, budgets or strategies) or ``overwrite`` (all of it is removed first). A failed run stops the
study after the others have finished, naming each failure and its log; ``resume true`` then carries on
from there. A finished fine-tuning run's ``models/last.pt`` is removed (``model.pt`` stays): at paper
scale they would fill about 30 GB.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomic
from ..checkpoint import file_sha256
from ..engine.epoch_log import read_metrics
from ..errors import DataError, show_cause_last
from ..run_folder import RECORD_NAME, RunFolder, changed_settings
from ..settings import as_flag, output_folder, whole_number
from .packing import BundleRun, run_packed
from .plan import FinetuneRun, PretrainingRun, StudyPlan, budget_label, check_data, plan_study
from .report import FIGURES, write_report
from .results import analyse

logger = logging.getLogger("cardioseg.study")

# What a resume may change: the grid may grow (or its summary be asked differently); the runs may not.
GRID_CHANGES = (
    "title",
    "strategies",
    "label_budgets",
    "seeds",
    "reference",
    "convergence_fraction",
    "convergence_floor",
)
ACDC_NOTE = (
    "Data: ACDC (Bernard et al., IEEE TMI 37(11) 2514-2525, 2018), non-commercial research use; validation "
    "on the split's validation patients."
)


class StudyFolder(RunFolder):
    OUTPUTS = (RECORD_NAME, "pretraining", "finetune", "results.json", "results.csv", "report.md", *FIGURES)


class Study:
    """A study into ``output_dir``: ``settings`` as :func:`cardioseg.study.plan.plan_study` takes them
    (plus ``title``), ``options`` the flags ``resume``, ``overwrite``, ``slots`` and ``reuse_processes``."""

    def __init__(self, settings: dict[str, Any], output_dir: str | Path, options: dict[str, Any], progress=False):
        show_cause_last()
        self.folder = StudyFolder(output_folder("output_dir", output_dir))
        self.resume = as_flag(options.get("resume", False), "resume")
        self.overwrite = as_flag(options.get("overwrite", False), "overwrite")
        self.slots = whole_number("slots", options.get("slots", 1), minimum=1)
        self.reuse_processes = as_flag(options.get("reuse_processes", True), "reuse_processes")
        self.progress = as_flag(progress, "progress")
        self.settings = dict(settings)
        self.plan: StudyPlan = plan_study(self.settings, self.folder.path)
        self.folder.check(self.resume, self.overwrite, self.settings, may_change=GRID_CHANGES)
        check_data(self.plan)

    def prepare(self) -> StudyPlan:
        """Claim the folder (lock it, and with ``overwrite`` empty it) and record the settings."""
        self.folder.claim(self.resume, self.overwrite, self.settings, may_change=GRID_CHANGES)
        write_text_atomic(self.folder.record_path, json.dumps({"settings": self.settings}, indent=2) + "\n")
        return self.plan

    def run(self) -> dict[str, Any]:
        """Pretrain, fine-tune, analyse, report; returns the results (as ``results.json``). The folder's lock
        ends with it, so that the same process (a notebook) may move or resume the study afterwards."""
        try:
            return self._pretrain_finetune_report()
        finally:
            self.folder.release()

    def _pretrain_finetune_report(self) -> dict[str, Any]:
        started, ran = time.perf_counter(), 0
        for stage in self.plan.stages():
            todo = [run for run in stage if not run.finished()]
            if todo:
                logger.info("pretraining: %s", ", ".join(run.name for run in todo))
                self._run([continued_run(run.bundle_run(self.plan.pretraining), run.folder) for run in todo])
            ran += len(todo)
        todo = [run for run in self.plan.finetune if not self._finished(run)]
        logger.info("fine-tuning: %d of %d runs to do, %d at a time", len(todo), len(self.plan.finetune), self.slots)
        self._run([continued_run(run.bundle_run(), run.folder) for run in todo])
        ran += len(todo)
        for run in self.plan.finetune:  # all finished (run_packed raises on a failure): their resume state goes
            (run.folder / "models" / "last.pt").unlink(missing_ok=True)
        metrics = {(run.strategy, run.budget, run.seed): _validated_metrics(run) for run in self.plan.finetune}
        results = analyse(self.plan, metrics)
        for budget, target in results["targets"].items():
            if target is None:
                logger.warning(
                    "with %s no strategy learned (best mean Dice %.3f, below convergence_floor %g): "
                    "convergence is not measured there (train longer, or lower convergence_floor)",
                    budget,
                    results["best_mean_val_dice"][budget],
                    self.plan.convergence_floor,
                )
        context = self._context(started, ran, results)
        results |= {"title": context["title"], "command": context["command"], "machine": context["machine"]}
        results["pretraining"] = context["pretraining"]
        write_text_atomic(self.folder.path / "results.json", json.dumps(results, indent=2) + "\n")
        for path in write_report(self.plan, results, context, self.folder.path):
            logger.info("wrote %s", path)
        return results

    def _run(self, runs: list[BundleRun]) -> None:
        if runs:
            run_packed(runs, self.slots, progress=self.progress, reuse_processes=self.reuse_processes)

    def _finished(self, run: FinetuneRun) -> bool:
        """Whether the run's folder holds it finished, with the settings the study gives it; one with other
        settings (a resumed study whose fine-tuning settings were changed) is an error naming it."""
        if not (run.folder / RECORD_NAME).is_file() or not (run.folder / "metrics.jsonl").is_file():
            return False
        record = json.loads((run.folder / RECORD_NAME).read_text())
        recorded = {k: record["settings"].get(k) for k in run.settings}
        if _same_start_moved(record.get("pretrained"), recorded.get("pretrained"), run.settings.get("pretrained")):
            recorded["pretrained"] = run.settings["pretrained"]
        differences = changed_settings(recorded, run.settings)
        if differences:
            raise DataError(run.folder, f"holds a run with other settings ({'; '.join(differences)})")
        lines = read_metrics(run.folder / "metrics.jsonl")
        stop = record["settings"].get("stop_at_dice")
        stopped = stop is not None and lines and (lines[-1].get("val_dice_mean") or 0.0) >= float(stop)
        return bool(lines) and (lines[-1]["epoch"] >= int(record["settings"]["epochs"]) or stopped)

    def _context(self, started: float, ran: int, results: dict[str, Any]) -> dict[str, Any]:
        patients = {}
        for run in self.plan.finetune:
            if run.budget is None:
                split = json.loads((run.folder / RECORD_NAME).read_text())["split"]
                patients[budget_label(None)] = len(split["train"])
                break
        patients |= {budget_label(b): b for b in self.plan.budgets if b is not None}
        dataset = str(self.plan.finetune[0].settings.get("dataset_dir", ""))
        pretraining = [_pretraining_summary(run) for run in self.plan.pretraining.values()]
        return {
            "title": self.settings.get("title") or f"Study in {self.folder.path}",
            "command": command_line(),
            "machine": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
            "finished": time.strftime("%Y-%m-%d %H:%M %Z"),
            "seconds": round(time.perf_counter() - started, 1),
            "run_seconds": sum(row["wall_seconds"] for row in results["runs"] + pretraining),
            "ran": ran,
            "runs": len(self.plan.pretraining) + len(self.plan.finetune),
            "patients": patients,
            "pretraining": pretraining,
            "data_note": ACDC_NOTE if "acdc" in dataset.lower() else f"Data: {dataset}.",
        }


def _same_start_moved(record: dict | None, recorded_path: str | None, path: str | None) -> bool:
    """Whether a run recorded starting from ``recorded_path`` started from the file now at ``path``: a study
    folder that was moved or renamed (copied off the GPU machine) records its runs' starts where they were,
    and the same bytes at the new place are the same start."""
    if record is None or recorded_path is None or path is None or recorded_path == path or not Path(path).is_file():
        return False
    return _sha256(str(path)) == record.get("sha256")


@functools.cache
def _sha256(path: str) -> str:  # a study's runs share a few checkpoints of up to hundreds of MB
    return file_sha256(path)


def continued_run(bundle_run: BundleRun, folder: Path) -> BundleRun:
    """The run as it continues in its folder: resumed from ``models/last.pt`` where an interrupted attempt
    left one, started over where it left a record only (killed before its first checkpoint), else new."""
    overrides = dict(bundle_run.overrides)
    if (folder / "models" / "last.pt").is_file():
        overrides["resume"] = True
    elif (folder / RECORD_NAME).is_file():
        overrides["overwrite"] = True
    return BundleRun(bundle_run.output_dir, overrides, bundle_run.config_file, bundle_run.run_id)


def _validated_metrics(run: FinetuneRun) -> list[dict]:
    lines = read_metrics(run.folder / "metrics.jsonl")
    if not any(line.get("val_dice_mean") is not None for line in lines):
        raise DataError(run.folder / "metrics.jsonl", "no validated epoch: set finetune#val_interval to at most epochs")
    return lines


def _pretraining_summary(run: PretrainingRun) -> dict[str, Any]:
    record = json.loads((run.folder / RECORD_NAME).read_text())
    settings, last = record["settings"], read_metrics(run.folder / "metrics.jsonl")[-1]
    return {
        "name": run.name,
        "recipe": run.recipe.stem,
        "method": settings["method"],
        "init": run.init or settings["init"],
        "epochs": settings["epochs"],
        "images": sum(source["images"] for source in record["data"]),
        "images_seen": last["images_seen"],
        "train_seconds": last["train_seconds"],
        "wall_seconds": last["wall_seconds"],
    }


def command_line() -> str:
    """The command as typed: ``python -m monai.bundle run study ...`` or ``cardioseg study ...``."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py":
        module = "monai.bundle" if program.parent.parts[-2:] == ("monai", "bundle") else program.parent.name
        return " ".join(["python", "-m", module, *sys.argv[1:]])
    return " ".join([program.name, *sys.argv[1:]])
