"""Pretraining runs the way users run it (recipes through MONAI's ConfigWorkflow, ``cardioseg pretrain``),
and fine-tuning starts from what it writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import one_line_error
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from test_ssl import SMALL_HEADS, write_imagefolder

from cardioseg.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from cardioseg.cli import main
from cardioseg.engine.epoch_log import read_metrics
from cardioseg.nets import build_encoder, build_unet
from cardioseg.training.settings import inspect_pretrained

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "pretraining" / "configs"
TINY = {
    "encoder": "resnet18",
    "image_size": 32,
    "batch_size": 4,
    "epoch_length": 4,
    "epochs": 1,
    "optimizer": "adamw",
    "learning_rate": 1e-3,
    "warmup_epochs": 0,
    "progress": False,
}
# method: (recipe, data, epochs); natural data for the supervised and generalist runs, cardiac for the rest
RUNS = {
    "byol": ("generalist", "natural", 1),
    "simclr": ("specialist", "cardiac", 1),
    "moco": ("specialist", "cardiac", 2),  # also the straight run the resume test compares with
    "vicreg": ("specialist", "mixed", 1),
    "mim": ("specialist", "cardiac", 1),
    "supervised": ("generalist", "natural", 1),
}


def pretraining(recipe: str, **overrides) -> ConfigWorkflow:
    """``python -m monai.bundle run pretraining --config_file pretraining/configs/RECIPE.json ...``,
    initialised (settings checked, data read, folder claimed); ``.run()`` trains."""
    workflow = ConfigWorkflow(
        config_file=str(RECIPES / f"{recipe}.json"),
        logging_file=False,
        run_id="pretraining",
        workflow_type=None,
        **{**TINY, **overrides},
    )
    workflow.initialize()
    return workflow


@pytest.fixture(scope="module")
def natural_dir(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("natural") / "images")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, phantom_dir, natural_dir):
    """One tiny pretraining run per method, made when a test first asks for it."""
    data = {"natural": [str(natural_dir)], "cardiac": [str(phantom_dir)]}
    data["mixed"] = data["natural"] + data["cardiac"]
    made: dict[str, Path] = {}

    def run(method: str) -> Path:
        if method not in made:
            recipe, kind, epochs = RUNS[method]
            out = tmp_path_factory.mktemp("pretrain") / method
            pretraining(
                recipe,
                method=method,
                method_options=SMALL_HEADS[method],
                data=data[kind],
                epochs=epochs,
                output_dir=str(out),
            ).run()
            made[method] = out
        return made[method]

    return run


@pytest.mark.parametrize("method", sorted(RUNS))
def test_each_method_pretrains_and_its_checkpoint_loads_into_the_unet(runs, method):
    out = runs(method)
    recipe, kind, epochs = RUNS[method]
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == list(range(1, epochs + 1))
    assert all(m["images_seen"] == 4 * m["epoch"] and m["train_seconds"] > 0 for m in metrics)
    milestones = sorted(p.name for p in (out / "models").glob("epoch_*.pt"))
    assert milestones == [f"epoch_{e:04d}.pt" for e in range(1, epochs + 1)]

    path = out / "models" / "final.pt"
    state, meta = load_checkpoint(path)
    extra = meta["extra"]
    scope = "unet" if method == "mim" else "encoder"
    assert meta["method"] == method and meta["encoder"] == "resnet18" and meta["epoch"] == epochs
    assert extra["scope"] == scope and extra["image_size"] == 32 and extra["epochs_planned"] == epochs
    assert extra["branch"] == ("target" if method in ("byol", "moco") else "online")
    assert extra["recipe"] == recipe and extra["init_chain"] == [] and meta["source"] == "random"
    assert {d["kind"] for d in extra["data"]} == {"natural", "cardiac"} if kind == "mixed" else {kind}
    assert extra["images"] == sum(d["images"] for d in extra["data"])

    # Fine-tuning's network takes it with no key surgery: every tensor of the file arrives unchanged.
    net = build_unet("resnet18", out_channels=4, pretrained=str(path))
    loaded = net.state_dict()
    assert {key.split(".")[0] for key in state} == ({"encoder", "decoder"} if scope == "unet" else {"encoder"})
    assert set(state) == {k for k in loaded if k.split(".")[0] in {"encoder", "decoder"}} or scope == "encoder"
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    record = inspect_pretrained("resnet18", str(path))  # what the bundle's data.json records
    assert record["sha256"] == file_sha256(path) == meta["sha256"]
    assert record["scope"] == scope and record["header"]["method"] == method


def test_hierarchical_natural_then_cardiac_records_the_chain(runs, phantom_dir, tmp_path, capsys):
    """The paper's hierarchical pretraining through ``cardioseg pretrain``: BYOL on natural images, then BYOL
    on cardiac frames from that checkpoint. With a vanishing learning rate the second stage's weights stay
    the first stage's, which shows the init was loaded (never a silent start from random weights)."""
    first = runs("byol") / "models" / "final.pt"
    out = tmp_path / "hierarchical"
    argv = ["--quiet", "pretrain", "--recipe", "hierarchical", "--method", "byol", "--encoder", "resnet18"]
    argv += ["--data", str(phantom_dir), "--init", str(first), "--epochs", "1", "--out", str(out)]
    argv += ["--method_options", repr(SMALL_HEADS["byol"]), "--learning_rate", "1e-12", "--device", "cpu"]
    argv += [
        item
        for key, value in TINY.items()
        if key not in ("encoder", "epochs", "learning_rate")
        for item in (f"--{key}", str(value))
    ]
    assert main(argv) == 0, capsys.readouterr().err
    first_state, first_meta = load_checkpoint(first)
    state, meta = load_checkpoint(out / "models" / "final.pt")
    torch.testing.assert_close(state["encoder.conv1.weight"], first_state["encoder.conv1.weight"], rtol=0, atol=1e-6)
    (link,) = meta["extra"]["init_chain"]
    assert link["source"] == str(first) and link["sha256"] == first_meta["sha256"] and link["method"] == "byol"
    assert [d["kind"] for d in link["data"]] == ["natural"] and [d["kind"] for d in meta["extra"]["data"]] == [
        "cardiac"
    ]
    assert meta["source"] == str(first) and meta["extra"]["recipe"] == "hierarchical"
    record = json.loads((out / "data.json").read_text())
    assert record["init"]["sha256"] == first_meta["sha256"] and record["init_chain"] == meta["extra"]["init_chain"]


def test_finetune_bundle_starts_from_a_byol_checkpoint(runs, phantom_dir, tmp_path, capsys):
    """``cardioseg finetune --pretrained`` with a BYOL checkpoint: its encoder is what training starts
    from, and the run's data.json records the file's sha256 and header."""
    from cardioseg.training.convergence import read_metrics as read_finetune_metrics

    pretrained = runs("byol") / "models" / "final.pt"
    out = tmp_path / "finetune"
    argv = ["--quiet", "finetune", str(phantom_dir), "--out", str(out), "--pretrained", str(pretrained)]
    argv += ["--dataset_format", "phantom", "--encoder", "resnet18", "--image_size", "32", "--epochs", "1"]
    argv += ["--batch_size", "4", "--epoch_length", "4", "--progress", "False", "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((out / "data.json").read_text())["pretrained"]
    _, meta = load_checkpoint(pretrained)
    assert record["sha256"] == meta["sha256"] and record["scope"] == "encoder" and record["prefix"] == "encoder"
    assert record["header"]["method"] == "byol" and record["header"]["extra"]["branch"] == "target"
    assert len(read_finetune_metrics(out / "metrics.jsonl")) == 1
    capsys.readouterr()
    assert main(["curves", str(runs("byol")), str(out), "--out", str(tmp_path / "mixed.png")]) == 2
    assert "byol: pretraining run(s) among fine-tuning runs: plot each kind apart" in one_line_error(capsys)


def test_curves_of_pretraining_runs_plot_their_loss(runs, tmp_path, capsys):
    png = tmp_path / "loss.png"
    assert main(["curves", str(runs("byol")), str(runs("simclr")), "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_resume_to_more_epochs_keeps_the_schedule_planned_for_them(runs, phantom_dir, tmp_path):
    """A 2-epoch cosine resumed to 3 epochs ends at 0 (carried on past its end, it climbed back up)."""
    out = Path(shutil.copytree(runs("moco"), tmp_path / "longer"))
    common = {"method": "moco", "method_options": SMALL_HEADS["moco"], "data": [str(phantom_dir)]}
    pretraining("specialist", output_dir=str(out), resume=True, epochs=3, **common).run()
    rates = [m["lr"] for m in read_metrics(out / "metrics.jsonl")]
    assert len(rates) == 3 and rates[2] == pytest.approx(0.0, abs=1e-12) and rates[1] == pytest.approx(0.0, abs=1e-12)


def test_a_run_stopped_in_its_first_epoch_resumes_from_the_start(runs, phantom_dir, tmp_path):
    """What Ctrl-C in epoch 1 leaves (the record, an empty log, no checkpoint) is resumed, not a dead end."""
    out = Path(shutil.copytree(runs("simclr"), tmp_path / "stopped"))
    shutil.rmtree(out / "models")
    (out / "models").mkdir()
    (out / "models" / ".last.pt.x1y2.tmp").write_bytes(b"PK half")  # a kill during the first checkpoint's write
    (out / "metrics.jsonl").write_text("")
    common = {"method": "simclr", "method_options": SMALL_HEADS["simclr"], "data": [str(phantom_dir)]}
    pretraining("specialist", output_dir=str(out), resume=True, **common).run()
    assert [m["epoch"] for m in read_metrics(out / "metrics.jsonl")] == [1]
    assert (out / "models" / "final.pt").is_file()


def test_a_diverged_run_stops_before_logging_or_saving_the_epoch(phantom_dir, tmp_path):
    from cardioseg.engine.epoch_log import TrainingDiverged

    out = tmp_path / "diverged"
    common = {"method": "simclr", "method_options": SMALL_HEADS["simclr"], "data": [str(phantom_dir)]}
    run = pretraining("specialist", output_dir=str(out), **common).parser.get_parsed_content("workflow")
    method = run.trainer.network
    method.training_loss = lambda views, labels, generator: method.pooled(method.backbone, views[0]).sum() * torch.nan
    with pytest.raises(TrainingDiverged, match="epoch 1: the mean training loss is nan: the run diverged"):
        run.run()
    assert read_metrics(out / "metrics.jsonl") == [] and not (out / "models").exists()


def test_resume_after_interruption_equals_a_straight_run(runs, phantom_dir, tmp_path):
    """MoCo (momentum target and queue) stopped after epoch 1 and resumed gives the straight run's log
    and weights."""
    straight = runs("moco")
    out = tmp_path / "resumed"
    common = {"method": "moco", "method_options": SMALL_HEADS["moco"], "data": [str(phantom_dir)], "epochs": 2}
    interrupted = pretraining("specialist", output_dir=str(out), **common)
    trainer = interrupted.parser.get_parsed_content("workflow").trainer
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda engine: engine.terminate())
    interrupted.run()
    assert [m["epoch"] for m in read_metrics(out / "metrics.jsonl")] == [1]
    assert not (out / "models" / "final.pt").exists()
    # What a kill during epoch 2's writes leaves besides: a temporary file and a log line cut short.
    (out / "models" / ".last.pt.x1y2.tmp").write_bytes(b"PK\x03\x04 half")
    with open(out / "metrics.jsonl", "a") as log:
        log.write('{"epoch": 2, "step"')
    pretraining("specialist", output_dir=str(out), resume=True, **common).run()
    assert not list(out.rglob("*.tmp"))

    expected, resumed = read_metrics(straight / "metrics.jsonl"), read_metrics(out / "metrics.jsonl")
    assert [m["epoch"] for m in resumed] == [1, 2]
    for a, b in zip(expected, resumed):
        assert a["images_seen"] == b["images_seen"] and a["lr"] == pytest.approx(b["lr"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
    a, _ = load_checkpoint(straight / "models" / "final.pt")
    b, _ = load_checkpoint(out / "models" / "final.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    queue_a = torch.load(straight / "models" / "last.pt", weights_only=True)["method"]["_extra_state"]["queue"]
    queue_b = torch.load(out / "models" / "last.pt", weights_only=True)["method"]["_extra_state"]["queue"]
    torch.testing.assert_close(queue_a, queue_b, rtol=1e-5, atol=1e-6)


BAD_INPUT = [
    "unknown method",
    "unknown setting",
    "no images",
    "unreadable image",
    "other depth",
    "not a checkpoint",
    "cardiac labels",
    "patch size",
    "head size",
    "momentum",
    "batch over the data",
    "data inside data",
]


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_and_writes_nothing(phantom_dir, tmp_path, capsys, case):
    method, data, init, named, extra = "byol", tmp_path / "images", "none", None, []
    write_imagefolder(data, per_class=2)
    if case == "unknown method":
        method, named = "byol2", "setting 'method' is 'byol2': choose one of byol, simclr, moco, vicreg, mim"
    elif case == "unknown setting":
        extra, named = ["--batchsize", "8"], "setting 'batchsize' is 8: not a setting of specialist.json"
    elif case == "no images":
        data = tmp_path / "empty"
        (data / "class_a").mkdir(parents=True)
        named = f"{data}: unknown layout"
    elif case == "unreadable image":
        (data / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
        named = f"{data / 'dog' / '1.png'}: not a readable image"
    elif case == "other depth":
        init = tmp_path / "r34.pt"
        save_checkpoint(
            init, build_encoder("resnet34").state_dict(), method="byol", source="random", epoch=1, encoder="resnet34"
        )
        named = f"{init}: holds resnet34 weights; the network's encoder is resnet18"
    elif case == "not a checkpoint":
        init = tmp_path / "notes.pt"
        init.write_text("my notes, not weights")
        named = f"{init}: not a readable PyTorch file"
    elif case == "patch size":
        method, extra = "mim", ["--method_options", "{'patch_size': 24}"]
        named = "setting 'method_options#patch_size' is 24: must divide image_size (32)"
    elif case == "head size":
        method, extra = "simclr", ["--method_options", "{'projection_dim': 0}"]
        named = "setting 'method_options#projection_dim' is 0: must be at least 1"
    elif case == "momentum":
        extra = ["--method_options", "{'momentum_start': 2}"]
        named = "setting 'method_options#momentum_start' is 2: must be a finite number in [0, 1]"
    elif case == "batch over the data":
        extra = ["--batch_size", "64"]
        named = "setting 'batch_size' is 64: exceeds the 4 images of the data"
    elif case == "data inside data":
        extra = ["--data", str(data / "dog")]
        named = f"{data / 'dog'} is {data} or lies inside it: its images would be read twice"
    else:
        method, data = "supervised", phantom_dir
        named = f"setting 'data' is '{phantom_dir}': supervised pretraining needs labelled ImageFolder data"
    out = tmp_path / "run"
    argv = ["--quiet", "pretrain", "--method", method, "--encoder", "resnet18", "--data", str(data)]
    argv += ["--init", str(init), "--epochs", "1", "--out", str(out), "--image_size", "32", "--warmup_epochs", "0"]
    assert main(argv + extra) == 2
    assert named in one_line_error(capsys)
    assert not out.exists()


def test_a_finished_run_is_not_trained_over(runs, phantom_dir, capsys):
    out = runs("simclr")
    capsys.readouterr()  # what making the run printed
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    argv = ["--quiet", "pretrain", "--method", "simclr", "--data", str(phantom_dir), "--out", str(out)]
    assert main(argv + ["--encoder", "resnet18", "--epochs", "1", "--warmup_epochs", "0"]) == 2
    assert "holds a run already" in one_line_error(capsys)
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("recipe", ["generalist", "specialist", "hierarchical"])
def test_recipes_are_the_papers_runs(recipe, monkeypatch):
    """Every recipe parses with its own values (no override), and they differ where the paper's runs do."""
    monkeypatch.setenv("CI", "true")
    parser = ConfigWorkflow(
        config_file=str(RECIPES / f"{recipe}.json"), logging_file=False, run_id="pretraining", workflow_type=None
    ).parser
    settings = parser.get_parsed_content("settings")
    assert parser.get_parsed_content("progress") is False  # no bars in CI logs
    assert settings["method"] == "byol" and settings["encoder"] == "resnet50" and settings["recipe"] == recipe
    natural = recipe == "generalist"
    assert settings["data"] == ["../shared/data/cifar10_subset" if natural else "../shared/data/acdc_ssl4mis"]
    expected_init = "pretraining/runs/generalist/models/final.pt" if recipe == "hierarchical" else "none"
    assert settings["init"] == expected_init


def test_two_process_ddp_overlay(phantom_dir, tmp_path):
    """multi_gpu_pretrain.json under torchrun, two CPU processes (gloo): each takes its part of a global
    batch, gradients are averaged, and only rank 0 writes the log and the checkpoints."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    configs = [str(RECIPES / "specialist.json"), str(RECIPES / "multi_gpu_pretrain.json")]
    settings = {**TINY, "epoch_length": 16, "method": "simclr", "output_dir": str(out)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "monai.bundle", "run"]
    command += ["pretraining", "--config_file", repr(configs), "--data", repr([str(phantom_dir)])]
    command += ["--method_options", repr(SMALL_HEADS["simclr"])]
    command += [item for key, value in settings.items() for item in (f"--{key}", str(value))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = read_metrics(out / "metrics.jsonl")
    assert line["step"] == 2 and line["images_seen"] == 16  # 2 steps x 2 processes x batch 4
    assert (out / "models" / "final.pt").is_file() and json.loads((out / "data.json").read_text())["images"] > 0
