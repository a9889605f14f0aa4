"""Fine-tuning through the bundle's train.json: it learns, it resumes to the same result, budgets hold."""

from __future__ import annotations

import json

import pytest
import torch
from bundle_helpers import TINY, TRAIN_CONFIG, bundle_workflow
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from cardioseg.nets import build_unet
from cardioseg.settings import SettingError
from cardioseg.training.averaging import WeightAverage
from cardioseg.training.convergence import read_metrics
from cardioseg.training.data import prepare_finetune_data
from cardioseg.training.deep_supervision import DeepSupervision
from cardioseg.training.loaders import VolumeLoader, slices_to_volume


def stop_after_epoch(workflow: ConfigWorkflow, epoch: int) -> None:
    trainer = workflow.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=epoch), lambda engine: engine.terminate())


def test_resume_continues_to_the_same_result(phantom_dir, tmp_path):
    """With weight averaging and deep supervision on, so their states must resume too."""
    common = {
        "dataset_dir": str(phantom_dir),
        "dataset_format": "phantom",
        "epochs": 3,
        "seed": 1,
        "ema_decay": 0.9,
        "deep_supervision": 2,
    }
    straight = bundle_workflow(output_dir=str(tmp_path / "straight"), **common)
    straight.run()

    interrupted = bundle_workflow(output_dir=str(tmp_path / "resumed"), **common)
    stop_after_epoch(interrupted, 2)
    interrupted.run()
    assert [m["epoch"] for m in read_metrics(tmp_path / "resumed" / "metrics.jsonl")] == [1, 2]
    bundle_workflow(output_dir=str(tmp_path / "resumed"), resume=True, **common).run()

    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [m["epoch"] for m in resumed] == [1, 2, 3]
    for a, b in zip(expected, resumed):
        assert a["step"] == b["step"] and a["images_seen"] == b["images_seen"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_dice_mean"] == pytest.approx(b["val_dice_mean"], abs=1e-5)
    for name in ("model.pt", "last.pt"):
        a = torch.load(tmp_path / "straight" / "models" / name, weights_only=True)
        b = torch.load(tmp_path / "resumed" / "models" / name, weights_only=True)
        weights_a, weights_b = a.get("model", a), b.get("model", b)
        for key in weights_a:
            torch.testing.assert_close(weights_a[key], weights_b[key], rtol=1e-5, atol=1e-6, msg=key)
    last = torch.load(tmp_path / "resumed" / "models" / "last.pt", weights_only=True)
    straight_heads = torch.load(tmp_path / "straight" / "models" / "last.pt", weights_only=True)[
        "deep_supervision_heads"
    ]
    assert len(last["deep_supervision_heads"]) == 4  # two 1x1 convolutions, weight and bias
    for key, value in last["deep_supervision_heads"].items():
        torch.testing.assert_close(value, straight_heads[key], rtol=1e-5, atol=1e-6, msg=key)
    averaged = last["weight_average"]["averaged"]
    assert last["weight_average"]["updates"] == 3 * 16 // 4  # every step of 3 epochs
    assert any(not torch.equal(averaged[k], last["model"][k]) for k in averaged)
    best = torch.load(tmp_path / "resumed" / "models" / "model.pt", weights_only=True)
    if last["checkpointer"]["epoch"] == 3:  # model.pt holds the weights validated: the average's
        assert all(torch.equal(best[k], averaged[k]) for k in best)


def test_stop_at_dice_ends_the_run_at_the_first_epoch_that_reaches_it(phantom_dir, tmp_path):
    """The stopped run is the full run's first epochs (the schedule stays that of ``epochs``), and its
    checkpoints are written at the stop."""
    common = {"dataset_dir": str(phantom_dir), "dataset_format": "phantom", "epochs": 4, "seed": 1}
    common |= {"batch_size": 8, "epoch_length": 48, "learning_rate": 0.003}  # Dice above 0 by epoch 3
    bundle_workflow(output_dir=str(tmp_path / "full"), **common).run()
    full = read_metrics(tmp_path / "full" / "metrics.jsonl")
    target = full[2]["val_dice_mean"]  # epoch 3's: reached there at the latest
    stop = next(m["epoch"] for m in full if m["val_dice_mean"] >= target)
    assert target > 0 and stop < 4  # a run that stops early, not at its end

    bundle_workflow(output_dir=str(tmp_path / "stopped"), stop_at_dice=target, **common).run()
    stopped = read_metrics(tmp_path / "stopped" / "metrics.jsonl")
    assert [m["epoch"] for m in stopped] == list(range(1, stop + 1))
    for a, b in zip(full, stopped):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
    last = torch.load(tmp_path / "stopped" / "models" / "last.pt", weights_only=True)
    assert last["trainer"]["iteration"] == stop * 48 // 8 and (tmp_path / "stopped" / "models" / "model.pt").is_file()


def test_deep_supervision_adds_coarser_outputs_and_leaves_the_unet_alone():
    unet = build_unet("resnet18").eval()
    images = torch.rand(2, 1, 64, 64)
    plain = DeepSupervision(unet, 0)
    torch.testing.assert_close(plain(images), unet(images))
    outputs = DeepSupervision(unet, 3)(images)
    assert [tuple(o.shape) for o in outputs] == [(2, 4, 64, 64), (2, 4, 32, 32), (2, 4, 16, 16), (2, 4, 8, 8)]
    torch.testing.assert_close(outputs[0], unet(images))  # the main output is the U-Net's own
    with pytest.raises(SettingError, match="'deep_supervision' is 5: must be between 0 and 4"):
        DeepSupervision(unet, 5)


def test_weight_average_warms_up_then_follows_its_decay():
    network = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in network.state_dict().items()}
    average = WeightAverage(network, decay=0.5)
    assert average.network is not network and WeightAverage(network).network is network
    with torch.no_grad():
        network[0].weight.add_(1.0)
    average.update()  # warm-up: decay min(0.5, 1/10)
    torch.testing.assert_close(average.network[0].weight, start["0.weight"] + 0.9)
    with torch.no_grad():
        network[0].weight.add_(1.0)
    average.update()
    average.update()  # decay min(0.5, 2/11), then min(0.5, 3/12)
    expected = (start["0.weight"] + 2.0) - (1.1 * 2 / 11) * (3 / 12)
    torch.testing.assert_close(average.network[0].weight, expected)
    network(torch.randn(4, 2))  # BatchNorm statistics are averaged, its step count copied
    average.update()
    assert average.network[1].num_batches_tracked == network[1].num_batches_tracked == 1
    assert average.network[0].weight.requires_grad is False
    restored = WeightAverage(network, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 4 and torch.equal(restored.network[0].weight, average.network[0].weight)


def test_resume_without_checkpoint_is_refused(phantom_dir, tmp_path, capsys):
    from cardioseg.cli import main

    code = main(
        [
            "--quiet",
            "finetune",
            str(phantom_dir),
            "--out",
            str(tmp_path / "none"),
            "--dataset_format",
            "phantom",
            "--encoder",
            "resnet18",
            "--image_size",
            "64",
            "--epochs",
            "1",
            "--resume",
            "true",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "holds no run to resume" in err and "data.json" in err
    assert "Traceback" not in err


def test_label_budget_and_fixed_epoch_length(phantom_dir, tmp_path):
    out = tmp_path / "budget"
    workflow = bundle_workflow(
        dataset_dir=str(phantom_dir),
        dataset_format="phantom",
        epochs=1,
        num_labelled_slices=5,
        output_dir=str(out),
    )
    workflow.run()
    data = json.loads((out / "data.json").read_text())
    assert data["labelled_slices"] == 5 and data["budget"]["unit"] == "slices"
    assert not set(data["split"]["train"]) & set(data["split"]["val"])
    (line,) = read_metrics(out / "metrics.jsonl")
    assert line["images_seen"] == TINY["epoch_length"]  # oversampled: same epoch length as a full budget
    assert set(line["val_dice"]) == {"RV", "MYO", "LV"}
    assert 0 < line["val_seconds"] < line["wall_seconds"]


def test_frozen_encoder_keeps_its_weights_and_trains_the_decoder(phantom_dir, tmp_path):
    """The frozen-encoder probe: encoder weights as they started, its batch-norm statistics following the
    data, the decoder and head trained, the setting recorded."""
    out = tmp_path / "frozen"
    workflow = bundle_workflow(
        dataset_dir=str(phantom_dir), dataset_format="phantom", epochs=1, freeze_encoder=True, output_dir=str(out)
    )
    network = workflow.parser.get_parsed_content("network")
    start = {k: v.detach().clone() for k, v in network.state_dict().items()}
    optimizer = workflow.parser.get_parsed_content("optimizer")
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained and not trained & {id(p) for p in network.encoder.parameters()}
    workflow.run()
    weights = torch.load(out / "models" / "last.pt", weights_only=True)["model"]
    encoder_weights = [f"encoder.{name}" for name, _ in network.encoder.named_parameters()]
    assert all(torch.equal(weights[k], start[k]) for k in encoder_weights)
    assert not torch.equal(weights["encoder.bn1.running_mean"], start["encoder.bn1.running_mean"])
    decoder = [k for k in weights if k.startswith(("decoder.", "segmentation_head.")) and k.endswith("weight")]
    assert decoder and all(not torch.equal(weights[k], start[k]) for k in decoder)
    assert json.loads((out / "data.json").read_text())["settings"]["freeze_encoder"] is True


def test_a_narrower_decoder_trains_and_is_rebuilt_from_its_weights(phantom_dir, tmp_path):
    from monai.bundle import run

    from cardioseg.bundle import package_run
    from cardioseg.inference import build_segmenter

    out = tmp_path / "narrow"
    channels = [64, 32, 16, 16, 8]
    bundle_workflow(
        dataset_dir=str(phantom_dir), dataset_format="phantom", epochs=1, decoder_channels=channels, output_dir=str(out)
    ).run()
    assert json.loads((out / "data.json").read_text())["settings"]["decoder_channels"] == channels
    segmenter = build_segmenter(out / "models" / "model.pt")  # strict load: the decoder read from the weights
    blocks = segmenter.network.decoder.blocks
    assert [block.convs.conv_1.conv.out_channels for block in blocks] == channels
    settings = {"run_dir": str(out), "dataset_dir": str(phantom_dir), "output_dir": str(tmp_path / "ev")}
    run(config_file=str(TRAIN_CONFIG.with_name("evaluate.json")), logging_file=False, progress=False, **settings)
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["summary"]["dice"]["mean"]
    exported = package_run(out)["bundle_dir"]  # ONNX and TorchScript from the same narrow network
    assert (exported / "models" / "model.ts").is_file() and (exported / "models" / "model.onnx").is_file()


def test_multigpu_config_under_torchrun(phantom_dir, tmp_path):
    """multi_gpu_train.json with two processes (gloo on the CPU): one global batch per step, one log."""
    import subprocess
    import sys

    configs = [str(TRAIN_CONFIG), str(TRAIN_CONFIG.with_name("multi_gpu_train.json"))]
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        repr(configs),
        "--dataset_dir",
        str(phantom_dir),
        "--dataset_format",
        "phantom",
        "--output_dir",
        str(out),
        "--epochs",
        "1",
        "--epoch_length",
        "16",
        "--progress",
        "False",
        *[item for key, value in TINY.items() if key != "progress" for item in (f"--{key}", str(value))],
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = read_metrics(out / "metrics.jsonl")
    assert line["step"] == 2 and line["images_seen"] == 16  # 2 steps x 2 processes x batch 4
    weights = torch.load(out / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in weights)  # the network, not its DDP wrapper


@pytest.mark.slow
def test_real_acdc_few_patients_learns_the_lv(acdc_ssl4mis, tmp_path):
    """10 labelled real patients, 64x64, ResNet-18, ~100 steps on the CPU.

    An untrained network labels about a quarter of the pixels LV at random, while the LV is ~1.3% of the
    pixels, so its LV Dice is near 2*0.013*0.25/(0.013+0.25) = 0.025; 0.5 needs a network that has learned
    where and what the LV cavity is.
    """
    out = tmp_path / "acdc"
    bundle_workflow(
        dataset_dir=str(acdc_ssl4mis),
        dataset_format="ssl4mis",
        num_labelled_patients=10,
        epochs=6,
        batch_size=16,
        epoch_length=256,
        learning_rate=0.003,
        output_dir=str(out),
    ).run()
    metrics = read_metrics(out / "metrics.jsonl")
    best_lv = max(m["val_dice"]["LV"] for m in metrics)
    assert best_lv > 0.5, metrics
    assert (out / "models" / "model.pt").exists()


def test_bf16_training_runs_without_loss_scaling():
    """The scaler MONAI builds for amp is swapped for a pass-through one; steps still update the network."""
    from monai.engines import SupervisedTrainer
    from monai.losses import DiceCELoss

    from cardioseg.nets import build_unet
    from cardioseg.training.workflow import without_loss_scaling

    net = build_unet("resnet18")
    batch = {"image": torch.rand(2, 1, 64, 64), "label": torch.randint(0, 4, (2, 1, 64, 64)).float()}
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[batch, batch],
        network=net,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-3),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        amp=True,
        amp_kwargs={"dtype": torch.bfloat16},
        decollate=False,
    )
    without_loss_scaling(trainer)
    before = net.encoder.conv1.weight.detach().clone()
    trainer.run()
    # MONAI's own is a torch.cuda.amp.GradScaler (enabled on CUDA); ours replaced it at STARTED
    assert type(trainer.scaler) is torch.amp.GradScaler and not trainer.scaler.is_enabled()
    assert torch.isfinite(trainer.state.output["loss"]) and not torch.equal(before, net.encoder.conv1.weight)


def test_unknown_dataset_format_is_one_line(phantom_dir, tmp_path, capsys):
    from cardioseg.cli import main

    code = main(["--quiet", "finetune", str(phantom_dir), "--out", str(tmp_path / "x"), "--dataset_format", "nifti"])
    err = capsys.readouterr().err
    assert code == 2 and "'dataset_format' is 'nifti': choose one of" in err and "Traceback" not in err


def test_a_small_data_set_still_gets_sixteen_steps_per_epoch(caplog):
    """Seven patients in their own folder (126 slices) once gave 4 steps per epoch and a background-only model."""
    from cardioseg.training.loaders import MIN_STEPS_PER_EPOCH, default_epoch_length

    with caplog.at_level("WARNING", logger="cardioseg.training"):
        assert default_epoch_length(126, 32) == MIN_STEPS_PER_EPOCH * 32
        assert default_epoch_length(126, 8, world_size=2) == MIN_STEPS_PER_EPOCH * 16
    assert "only 126 training slices" in caplog.text
    caplog.clear()
    assert default_epoch_length(1312, 32) == 1312
    assert caplog.text == ""


def test_padded_and_grouped_validation_batches_score_as_one_volume_each(phantom_dir):
    """Padding volumes' slices (a few batch shapes for cuDNN's autotuner) and batching several volumes
    together (fewer evaluator iterations) change no volume's Dice."""
    from monai.metrics import DiceMetric

    data = prepare_finetune_data(phantom_dir, "phantom", image_size=64)
    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 4, 3, padding=1)  # untrained, but its classes follow the intensities
    network.bias.data = torch.tensor([0.0, 0.0, 0.0, 1.0])  # and empty padding slices would all be LV

    def dice_per_volume(loader: VolumeLoader) -> list[float]:
        metric = DiceMetric(include_background=False, reduction="none")
        with torch.no_grad():
            for batch in loader:
                scored = slices_to_volume({"pred": network(batch["image"]), "label": batch["label"]})
                metric(scored["pred"], scored["label"])
        return sorted(metric.aggregate().flatten().tolist())

    plain = VolumeLoader(data.val, "cpu")
    grouped = VolumeLoader(data.val, "cpu", slice_multiple=5, max_slices=20)
    assert len(plain) == 2 and len(grouped) == 1  # ED and ES of 8 slices, padded to 10: both in 20
    for batch in grouped:
        volumes = batch["label"].shape[0]
        assert batch["label"].shape[1:3] == (1, 10) and batch["image"].shape[0] == volumes * 10
        assert (batch["label"][:, :, 8:] == -1).all() and not batch["image"].reshape(volumes, 10, -1)[:, 8:].any()
    expected = dice_per_volume(plain)
    assert max(expected) > 0.05 and dice_per_volume(grouped) == pytest.approx(expected, abs=1e-6)


class CountingCheckpointer:
    """A ResumeCheckpointer whose writes are recorded instead of made."""

    @staticmethod
    def run(interval_seconds: float, epochs: int = 3, stop=None) -> list[int]:
        from ignite.engine import Engine

        from cardioseg.engine.resume import ResumeCheckpointer

        written = []

        class Recording(ResumeCheckpointer):
            def save(self, engine):
                written.append(engine.state.epoch)

        trainer = Engine(lambda engine, batch: None)
        Recording("unused", {"trainer": trainer}, interval_seconds).attach(trainer)
        if stop is not None:
            trainer.add_event_handler(stop, lambda engine: engine.terminate())
        trainer.run(range(4), max_epochs=epochs)
        return written


def test_last_checkpoint_cadence():
    """Every epoch at 0 s; at a long interval only after the last epoch, or the epoch a run stopped after;
    a run stopped inside an epoch keeps the previous write, as a kill would."""
    assert CountingCheckpointer.run(0) == [1, 2, 3]
    assert CountingCheckpointer.run(1e6) == [3]
    assert CountingCheckpointer.run(1e6, stop=Events.EPOCH_COMPLETED(once=2)) == [2]
    assert CountingCheckpointer.run(0, stop=Events.ITERATION_COMPLETED(once=6)) == [1]


def test_best_weights_are_written_with_the_next_checkpoint(tmp_path):
    """model.pt holds the best epoch's weights although it is written only after the last epoch."""
    from ignite.engine import Engine

    from cardioseg.training.checkpointing import RunCheckpointer

    net = torch.nn.Linear(1, 1, bias=False)
    dice_by_epoch = {1: 0.5, 2: 0.7, 3: 0.6}
    evaluator = Engine(lambda engine, batch: None)

    def train_epoch(engine):
        with torch.no_grad():
            net.weight.fill_(float(engine.state.epoch))
        evaluator.state.metrics = {"val_mean_dice": dice_by_epoch[engine.state.epoch]}

    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, train_epoch)
    checkpointer = RunCheckpointer(tmp_path, evaluator, {"model": net, "trainer": trainer}, interval_seconds=1e6)
    checkpointer.attach(trainer)
    trainer.run(range(2), max_epochs=3)
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    assert best["weight"].item() == 2.0
    assert torch.load(tmp_path / "last.pt", weights_only=True)["checkpointer"] == {"metric": 0.7, "epoch": 2}


CUDNN_FLAGS = [  # cuda, deterministic, cudnn_benchmark setting -> cudnn.benchmark
    (True, False, True, True),
    (True, True, True, False),
    (True, False, False, False),
    (False, False, True, False),
]


@pytest.mark.parametrize(("cuda", "deterministic", "wanted", "benchmark"), CUDNN_FLAGS)
def test_seed_run_leaves_cudnn_free_unless_asked(cuda, deterministic, wanted, benchmark):
    """MONAI's set_determinism alone would leave cuDNN deterministic and untuned on every run."""
    from cardioseg.engine.seeding import seed_run

    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        seed_run(3, cuda, deterministic, wanted)
        assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == (deterministic, benchmark)
        first = torch.rand(2)
        seed_run(3, cuda, deterministic, wanted)
        assert torch.equal(first, torch.rand(2))
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def test_an_epoch_without_validation_logs_no_dice(tmp_path):
    from ignite.engine import Engine

    from cardioseg.training.convergence import ConvergenceLog

    evaluator, trainer = Engine(lambda engine, batch: None), Engine(lambda engine, batch: None)
    evaluator.state.metrics = {"val_mean_dice": 0.5, "val_dice_per_class": torch.tensor([0.4, 0.5, 0.6])}
    evaluator.state.epoch = trainer.state.epoch = 2  # validated after epoch 2 (val_interval 2)
    evaluator.state.times["COMPLETED"] = 0.25
    log = ConvergenceLog(tmp_path / "metrics.jsonl", evaluator, batch_size=2)
    validated = {"val_dice_mean": 0.5, "val_dice": {"RV": 0.4, "MYO": 0.5, "LV": 0.6}, "val_seconds": 0.25}
    assert log.extra_fields(trainer) == validated
    trainer.state.epoch = 3  # the evaluator still holds epoch 2's Dice
    assert log.extra_fields(trainer) == {"val_dice_mean": None, "val_dice": {}, "val_seconds": None}


@pytest.mark.parametrize(
    ("compile_mode", "wanted"),
    [("reduce-overhead", {"mode": "reduce-overhead"}), ("cudagraphs", {"backend": "cudagraphs"})],
)
def test_compile_mode_reaches_torch_compile(phantom_dir, tmp_path, monkeypatch, compile_mode, wanted):
    """``compile_mode`` is handed to torch.compile (CUDA graphs with "reduce-overhead", or without Inductor
    with "cudagraphs"); the compilation itself is the GPU benchmarks' to time."""
    compiled = {}

    def record(model, **kwargs):
        compiled.update(kwargs)
        return model

    monkeypatch.setattr(torch, "compile", record)
    workflow = bundle_workflow(
        dataset_dir=str(phantom_dir),
        dataset_format="phantom",
        output_dir=str(tmp_path / "run"),
        compile=True,
        compile_mode=compile_mode,
    )
    workflow.parser.get_parsed_content("train#trainer")
    assert compiled == wanted


@pytest.mark.parametrize(("progress", "shown"), [("false", False), ("True", True), (False, False)])
def test_progress_as_a_command_line_gives_it(capsys, progress, shown):
    """``--progress false`` reaches the bundle as the word "false", which must not show a bar."""
    from ignite.engine import Engine

    from cardioseg.engine.progress import attach_progress_bar

    trainer = Engine(lambda engine, batch: None)
    attach_progress_bar(trainer, progress)
    trainer.run([0, 1], max_epochs=1)
    assert ("Iteration: [1/2]" in capsys.readouterr().err) is shown


def test_crop_windows_keep_the_slice_resolution_and_lie_inside_it():
    from cardioseg.training.augment import AugmentConfig, augment_batch

    ramp = torch.arange(64.0).repeat(64, 1)  # value = column: a window of it shows whether pixels were resized
    images = torch.stack([ramp / 64, ramp.T / 64]).unsqueeze(1).repeat(4, 1, 1, 1)  # x ramp and y ramp
    no_jitter = {"max_rotation_deg": 0.0, "scale_range": (1.0, 1.0), "p_flip": 0.0, "gamma_range": (1.0, 1.0)}
    config = AugmentConfig(**no_jitter, brightness=0.0, contrast_range=(1.0, 1.0), crop_size=32)
    windows, labels = augment_batch(images, images * 64, config, torch.Generator().manual_seed(0))
    assert windows.shape == labels.shape == (8, 1, 32, 32)
    x_steps, y_steps = torch.diff(windows[0::2] * 64, dim=-1), torch.diff(windows[1::2] * 64, dim=-2)
    assert torch.allclose(x_steps, torch.ones_like(x_steps), atol=1e-3)  # one pixel of the slice per pixel
    assert torch.allclose(y_steps, torch.ones_like(y_steps), atol=1e-3)
    starts = windows[0::2, 0, 0, 0] * 64  # the column of the slice each window starts at
    assert starts.min() >= -1e-3 and starts.max() <= 32 + 1e-3  # inside the slice (the steps: no zero padding)
    assert len({round(float(start)) for start in starts}) > 1  # placed at random
    with pytest.raises(ValueError, match="crop_size 96 does not fit 64x64"):
        augment_batch(images, images, AugmentConfig(crop_size=96), torch.Generator())


def test_a_run_on_crop_windows_validates_whole_slices(phantom_dir, tmp_path):
    out = tmp_path / "crops"
    workflow = bundle_workflow(
        dataset_dir=str(phantom_dir), dataset_format="phantom", epochs=1, crop_size=32, output_dir=str(out)
    )
    batch = next(iter(workflow.parser.get_parsed_content("train#loader")))
    assert batch["image"].shape[-2:] == batch["label"].shape[-2:] == (32, 32)
    workflow.run()
    assert json.loads((out / "data.json").read_text())["settings"]["crop_size"] == 32
    assert read_metrics(out / "metrics.jsonl")[0]["val_dice_mean"] is not None  # scored on 64x64 volumes
