"""The study as users run it (``cardioseg study --config paper --config OVERLAY``): the chained pretrainings,
the grid of bundle runs, the report; its settings checked before anything runs; its folder kept as it is
unless resumed, and a resume that redoes only what is missing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_helpers import one_line_error
from test_ssl import SMALL_HEADS, write_imagefolder

from cardioseg.checkpoint import file_sha256
from cardioseg.cli import main
from cardioseg.settings import SettingError
from cardioseg.study.packing import BundleRun
from cardioseg.study.plan import StudyPlan, plan_study, study_config
from cardioseg.study.report import report_markdown
from cardioseg.study.results import analyse
from cardioseg.study.workflow import continued_run

BYOL = {"method": "byol", "method_options": SMALL_HEADS["byol"]}
# The paper's study at the smallest size that still trains: two chained pretrainings, three strategies (one
# from a milestone checkpoint), two label budgets, two seeds: 12 fine-tuning runs of two short epochs.
TINY = {
    "title": "tiny study",
    "pretraining_defaults": {
        "encoder": "resnet18",
        "image_size": 32,
        "epochs": 2,
        "epoch_length": 8,
        "batch_size": 4,
        "optimizer": "adamw",
        "learning_rate": 0.001,
        "warmup_epochs": 0,
    },
    "pretraining": {
        "generalist": {"recipe": "generalist", "data": ["@natural_dir"], **BYOL},
        "hierarchical": {"recipe": "hierarchical", "data": ["@dataset_dir"], "init": "generalist", **BYOL},
    },
    "strategies": {
        "random": {"pretrained": None},
        "hierarchical": {"pretraining": "hierarchical"},
        "hierarchical_1_epoch": {"pretraining": "hierarchical", "epoch": 1},
    },
    "label_budgets": [1, None],
    "seeds": [0, 1],
    "finetune": {
        "dataset_dir": "@dataset_dir",
        "dataset_format": "phantom",
        "encoder": "resnet18",
        "image_size": 64,
        "epochs": 2,
        "epoch_length": 16,
        "batch_size": 8,
        "learning_rate": 0.003,
    },
    "reference": "random",
    "convergence_floor": 0.0,  # two epochs learn little: measure convergence whatever the runs reach
    "slots": 2,
}
OUTPUTS = ("report.md", "results.json", "results.csv", "convergence.png", "data_efficiency.png", "epochs_to_target.png")


def study_args(overlay: Path, out: Path, *extra: str) -> list[str]:
    return ["--quiet", "study", "--config", "paper", "--config", str(overlay), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def overlay(tmp_path_factory, phantom_dir) -> Path:
    work = tmp_path_factory.mktemp("study")
    natural = write_imagefolder(work / "natural")
    path = work / "tiny.json"
    path.write_text(json.dumps(TINY | {"dataset_dir": str(phantom_dir), "natural_dir": str(natural)}))
    return path


@pytest.fixture(scope="module")
def study(overlay, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study_run") / "study"
    assert main(study_args(overlay, out)) == 0
    return out


def test_the_study_pretrains_in_chain_finetunes_the_grid_and_reports(study):
    for name in OUTPUTS:
        assert (study / name).is_file(), name
    results = json.loads((study / "results.json").read_text())
    assert len(results["runs"]) == 12 and len(results["cells"]) == 6
    assert set(results["targets"]) == {"1_patients", "all_patients"}
    assert all(len(points) == 2 for points in results["curves"].values())
    with (study / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and {"strategy", "label_budget", "seed", "best_val_dice", "epochs_to_target"} <= set(rows[0])
    # each cell's convergence follows from its runs' curves and the budget's target
    for cell in results["cells"]:
        target = results["targets"][cell["label_budget"]]
        reached = [
            next((e for e, dice in points if dice >= target), None)
            for key, points in results["curves"].items()
            if key.startswith(f"{cell['strategy']}/{cell['label_budget']}/")
        ]
        assert cell["reached_target"] == f"{sum(e is not None for e in reached)}/2"
    best = max(c["best_val_dice"] for c in results["cells"] if c["label_budget"] == "1_patients")
    assert results["targets"]["1_patients"] == pytest.approx(0.95 * best, abs=1e-5)
    report = (study / "report.md").read_text()
    assert "# tiny study" in report and "![convergence](convergence.png)" in report and "hierarchical_1_epoch" in report
    assert "It ran all 14 runs" in report  # 2 pretrainings, 12 fine-tunings
    # a finished run keeps its model, not its resume state (GBs at paper scale)
    assert len(list((study / "finetune").rglob("model.pt"))) == 12 and not list((study / "finetune").rglob("last.pt"))

    # the chain: hierarchical pretraining started from the generalist's end; fine-tuning from each checkpoint
    pretraining = study / "pretraining"
    chain = json.loads((pretraining / "hierarchical" / "data.json").read_text())
    assert chain["init"]["sha256"] == file_sha256(pretraining / "generalist" / "models" / "final.pt")
    starts = {
        "hierarchical": pretraining / "hierarchical" / "models" / "final.pt",
        "hierarchical_1_epoch": pretraining / "hierarchical" / "models" / "epoch_0001.pt",
    }
    records = {}
    for strategy in ("random", "hierarchical", "hierarchical_1_epoch"):
        records[strategy] = json.loads(
            (study / "finetune" / strategy / "1_patients" / "seed1" / "data.json").read_text()
        )
    for strategy, checkpoint in starts.items():
        assert records[strategy]["pretrained"]["sha256"] == file_sha256(checkpoint)
    assert records["random"]["pretrained"] is None
    # a seed labels the same patient whatever the start: strategies are compared on the same labels
    assert len({json.dumps(record["budget"]) for record in records.values()}) == 1


def test_a_study_folder_is_not_run_over_and_a_resume_redoes_only_what_is_missing(study, overlay, capsys):
    finished = {p: p.stat().st_mtime_ns for p in (study / "finetune").rglob("metrics.jsonl")}
    assert main(study_args(overlay, study)) == 2
    assert "holds a run already" in one_line_error(capsys)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished

    assert main(study_args(overlay, study, "--finetune#epochs", "3", "--resume", "true")) == 2
    assert "(finetune#epochs: 2 -> 3)" in one_line_error(capsys)

    missing = study / "finetune" / "hierarchical" / "all_patients" / "seed0"
    lost = json.loads((missing / "metrics.jsonl").read_text().splitlines()[-1])
    for path in [*missing.rglob("*")][::-1]:
        path.unlink() if path.is_file() else path.rmdir()
    missing.rmdir()
    assert main(study_args(overlay, study, "--resume", "true")) == 0
    again = {p: p.stat().st_mtime_ns for p in finished if p.parent != missing}
    assert again == {p: t for p, t in finished.items() if p.parent != missing}
    assert "It ran 1 of the 14 runs" in (study / "report.md").read_text()
    redone = json.loads((missing / "metrics.jsonl").read_text().splitlines()[-1])
    # the same run again (on another share of the cores: equal up to floating point, which two epochs amplify)
    assert redone["epoch"] == lost["epoch"] and redone["val_dice_mean"] == pytest.approx(
        lost["val_dice_mean"], abs=0.02
    )


def test_a_moved_study_folder_is_read_again_without_rerunning(study, overlay):
    """Copied off the GPU machine or renamed, a study's runs record their starts at the old place: the same
    checkpoint bytes at the new place are the same start, so a resume reads every run and reruns none."""
    moved = study.with_name("moved")
    study.rename(moved)
    try:
        assert main(study_args(overlay, moved, "--resume", "true")) == 0
        assert "It ran 0 of the 14 runs" in (moved / "report.md").read_text()
    finally:
        moved.rename(study)


HERE = str(Path(__file__).parent)  # a folder that exists, for the data settings


def plan(**changes) -> StudyPlan:
    """The plan of TINY with ``changes``, its data settings pointed at a folder that exists."""
    settings = {k: v for k, v in TINY.items() if k != "title"}
    settings["pretraining"] = {name: dict(spec, data=[HERE]) for name, spec in TINY["pretraining"].items()}
    settings["finetune"] = dict(TINY["finetune"], dataset_dir=HERE)
    if "finetune" in changes:
        changes["finetune"] = settings["finetune"] | changes["finetune"]
    return plan_study(settings | changes, Path("unused"))


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"strategies": {"x": {"pretraining": "nope"}}}, "strategies#x#pretraining"),
        ({"strategies": {"x": {"pretraining": "hierarchical", "epoch": 11}}}, "strategies#x#epoch"),
        ({"strategies": {"x": {"pretrained": None, "num_labelled_patients": 3}}}, "strategies#x#num_labelled_patients"),
        ({"strategies": {"x": {"pretrained": "missing.pt"}}}, "strategies#x#pretrained"),
        ({"strategies": {"a b": {"pretrained": None}}}, "strategies"),
        ({"label_budgets": [0]}, "label_budgets"),
        ({"label_budgets": [3, 3]}, "label_budgets"),
        ({"seeds": []}, "seeds"),
        ({"finetune": {"epochs": 0}}, "finetune#epochs"),
        ({"finetune": {"seed": 1}}, "finetune#seed"),
        ({"finetune": {"epocs": 3}}, "finetune#epocs"),
        ({"reference": "nope"}, "reference"),
        ({"convergence_fraction": 1.5}, "convergence_fraction"),
        ({"convergence_floor": -0.1}, "convergence_floor"),
        ({"finetune": {"val_interval": 3}}, "finetune#val_interval"),
        ({"finetune": {"encoder": "resnet34"}}, "finetune#encoder"),
        ({"strategies": {"x": {"pretraining": "hierarchical", "encoder": "resnet34"}}}, "strategies#x#encoder"),
        ({"finetune": {"dataset_dir": None}}, "finetune#dataset_dir"),
        ({"pretraining": {"h": {"recipe": "hierarchical", "data": [HERE]}}}, "pretraining#h#init"),
        (
            {
                "pretraining": {
                    "a": {"recipe": "specialist", "data": [HERE], "init": "b"},
                    "b": {"recipe": "specialist", "data": [HERE], "init": "a"},
                }
            },
            "pretraining#a#init",
        ),
        ({"pretraining": {"a": {"recipe": "specialist", "data": [HERE], "epochs": -1}}}, "pretraining#a#epochs"),
        ({"pretraining": {"a": {"recipe": "specialist", "data": [HERE], "epocs": 1}}}, "pretraining#a#epocs"),
        ({"pretraining": {"a": {"recipe": "nope"}}}, "pretraining#a#recipe"),
        ({"pretraining_defaults": {"init": "x"}}, "pretraining_defaults#init"),
    ],
)
def test_every_setting_is_checked_before_anything_runs(changes, named):
    with pytest.raises(SettingError) as caught:
        plan(**changes)
    assert caught.value.name == named


def test_a_bad_setting_is_one_line_and_writes_nothing(overlay, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(study_args(overlay, out, "--seeds", "[0, 0]")) == 2
    assert "setting 'seeds'" in one_line_error(capsys)
    assert main(["--quiet", "study", "--config", "nope", "--out", str(out)]) == 2
    assert "setting 'config' is 'nope'" in one_line_error(capsys)
    assert not out.exists()
    assert study_config("small").is_file()


def epoch_lines(dice: list[float | None]) -> list[dict]:
    """A run's ``metrics.jsonl`` lines with the validation Dice ``dice`` per epoch (None: not validated)."""
    return [
        {"epoch": e, "val_dice_mean": d, "val_dice": {"RV": d}, "images_seen": 10 * e, "train_seconds": e}
        | {"wall_seconds": 2 * e}
        for e, d in enumerate(dice, start=1)
    ]


def test_a_pretraining_no_strategy_starts_from_is_not_run(caplog):
    assert set(plan().pretraining) == {"generalist", "hierarchical"}  # hierarchical starts from generalist
    assert plan(strategies={"random": {"pretrained": None}}).pretraining == {}
    assert "pretraining 'generalist' is not run: no strategy starts from it" in caplog.text


@pytest.mark.parametrize(
    "config, args, expected",
    [
        ("{not json", [], "not a readable JSON config"),
        ("[1, 2]", [], "a config is a JSON object"),
        ('{"label_budget": [1]}', [], "setting 'label_budget' is [1]: not a setting of the study"),
        (
            None,
            ["--epochs", "20"],
            "setting 'epochs' is 20: not a setting of the study (a fine-tuning setting is finetune#epochs)",
        ),
        (
            None,
            ["--label_budgets", "[1, 99]"],
            "setting 'label_budgets' is 99: must not exceed the 2 training patients",
        ),
        (None, ["--finetune#dataset_format", "ssl4mis"], "no SSL4MIS volumes"),
    ],
)
def test_a_bad_config_override_or_data_is_one_line_before_anything_runs(
    overlay, tmp_path, capsys, config, args, expected
):
    """What MONAI would take silently (a key nothing reads) or what would fail every run after the
    pretraining (a budget above the data's training patients, a wrong format) stops the study first."""
    extra = []
    if config is not None:
        (tmp_path / "more.json").write_text(config)
        extra = ["--config", str(tmp_path / "more.json")]
    out = tmp_path / "study"
    assert main([*study_args(overlay, out, *args), *extra]) == 2
    assert expected in one_line_error(capsys)
    assert not out.exists()


def test_convergence_and_accuracy_follow_from_the_curves():
    """Hand-made curves: ``fast`` gets to 90% of the best mean accuracy in 2 epochs, ``ref`` in 4."""
    settings = {
        "strategies": {"ref": {"pretrained": None}, "fast": {"pretrained": None}},
        "label_budgets": [None],
        "seeds": [0, 1],
        "finetune": {"dataset_dir": HERE},
        "reference": "ref",
        "convergence_fraction": 0.9,
    }
    curves = {
        ("ref", 0): [0.2, 0.5, 0.8, 0.9],
        ("ref", 1): [0.1, 0.4, None, 0.9],  # epoch 3 not validated
        ("fast", 0): [0.6, 0.95, 0.96, 0.96],
        ("fast", 1): [0.5, 0.9, 0.93, 0.95],
    }
    metrics = {(strategy, None, seed): epoch_lines(dice) for (strategy, seed), dice in curves.items()}
    results = analyse(plan_study(settings, Path("unused")), metrics)
    cells = {c["strategy"]: c for c in results["cells"]}
    assert results["targets"] == {"all_patients": pytest.approx(0.9 * 0.955)}
    assert cells["ref"]["best_val_dice"] == pytest.approx(0.9) and cells["fast"]["best_val_dice"] == pytest.approx(
        0.955
    )
    assert (cells["ref"]["epochs_to_target"], cells["fast"]["epochs_to_target"]) == (4, 2)
    assert cells["fast"]["speedup"] == 2.0 and cells["ref"]["speedup"] == 1.0
    assert cells["fast"]["beats_reference"] == "2/2" and "beats_reference" not in cells["ref"]
    assert results["curves"]["ref/all_patients/seed1"] == [(1, 0.1), (2, 0.4), (4, 0.9)]


def test_a_budget_where_no_strategy_learned_has_no_convergence_target():
    """With one labelled patient the best mean Dice is 0.08: 95% of it is noise, so no epochs to it are
    counted or compared; the budget where the strategies learned is measured as before."""
    settings = {
        "strategies": {"ref": {"pretrained": None}, "other": {"pretrained": None}},
        "label_budgets": [1, None],
        "seeds": [0],
        "finetune": {"dataset_dir": HERE},
        "reference": "ref",
    }
    curves = {
        ("ref", 1): [0.0, 0.08],
        ("other", 1): [0.08, 0.0],
        ("ref", None): [0.5, 0.8],
        ("other", None): [0.8, 0.8],
    }
    plan_ = plan_study(settings, Path("unused"))
    results = analyse(plan_, {(s, b, 0): epoch_lines(d) for (s, b), d in curves.items()})
    assert results["targets"] == {"1_patients": None, "all_patients": pytest.approx(0.76)}
    assert results["best_mean_val_dice"]["1_patients"] == pytest.approx(0.08)
    cells = {(c["strategy"], c["label_budget"]): c for c in results["cells"]}
    assert cells[("other", "1_patients")]["reached_target"] is None
    assert (
        cells[("other", "1_patients")]["epochs_to_target"] is None and cells[("other", "1_patients")]["speedup"] is None
    )
    assert cells[("other", "all_patients")]["speedup"] == 2.0
    context = {
        "title": "t",
        "command": "c",
        "machine": "m",
        "finished": "now",
        "seconds": 60,
        "run_seconds": sum(r["wall_seconds"] for r in results["runs"]),
        "ran": 4,
        "runs": 4,
        "patients": {"all_patients": 70, "1_patients": 1},
        "pretraining": [],
        "data_note": "",
    }
    report = report_markdown(plan_, results, context)
    assert "| ref | not measured | 2 (1/1, 1x) |" in report
    assert "1 labelled patient (0.080)" in report and "epochs sum to 0.3 minutes" in report


def test_a_run_continues_from_where_its_folder_left_it(tmp_path):
    """A run a resumed study meets again: new where nothing is left, started over where only its record is
    (killed before a checkpoint), resumed where an interrupted attempt left ``models/last.pt``."""
    folder = tmp_path / "seed0"
    run = BundleRun(folder, {"epochs": 2})
    assert continued_run(run, folder).overrides == {"epochs": 2}
    folder.mkdir()
    (folder / "data.json").write_text("{}")
    assert continued_run(run, folder).overrides == {"epochs": 2, "overwrite": True}
    (folder / "models").mkdir()
    (folder / "models" / "last.pt").write_bytes(b"")
    assert continued_run(run, folder).overrides == {"epochs": 2, "resume": True}
    assert run.overrides == {"epochs": 2}
