"""The bundle's ``cuda_graphs`` setting: its parsing and CPU fallback everywhere; on a CUDA machine, that a
replayed step trains as MONAI's eager trainer does (these skip on the CPU, where nothing can be captured:
run them on the GPU machine with ``pytest tests/test_cuda_graphs.py``)."""

from __future__ import annotations

import copy

import pytest
import torch
from bundle_helpers import TRAIN_CONFIG, bundle_workflow
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.optimizers import WarmupCosineSchedule
from torch._subclasses.fake_tensor import FakeTensorMode

from cardioseg.nets import build_unet
from cardioseg.settings import SettingError
from cardioseg.training.convergence import read_metrics
from cardioseg.training.cuda_graphs import (
    GraphedTrainStep,
    TrainingState,
    capture_training_graphs,
    cuda_graphs_mode,
    make_capturable,
)
from cardioseg.training.deep_supervision import DeepSupervision
from cardioseg.training.settings import check_single_process_options
from cardioseg.training.workflow import without_loss_scaling

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device (run on the GPU machine)")


@pytest.mark.parametrize(
    ("value", "mode"),
    [(False, None), ("false", None), (None, None), ("null", None), ("network", "network"), ("Step", "step")],
)
def test_the_setting_names_a_scope_or_none(value, mode):
    assert cuda_graphs_mode(value) == mode


@pytest.mark.parametrize("value", [True, "true", "often"])
def test_a_setting_without_a_scope_is_refused(value):
    with pytest.raises(SettingError, match="choose false, network or step"):
        cuda_graphs_mode(value)


def test_cuda_graphs_are_refused_with_several_processes():
    check_single_process_options({"cuda_graphs": "false"})
    with pytest.raises(SettingError, match="'cuda_graphs' is 'step': not with multi_gpu_train.json"):
        check_single_process_options({"cuda_graphs": "step"})


@pytest.mark.skipif(CUDA, reason="the CPU fallback")
@pytest.mark.parametrize("scope", ["network", "step"])
def test_on_the_cpu_the_run_trains_without_graphs_and_says_so(phantom_dir, tmp_path, caplog, scope):
    workflow = bundle_workflow(
        dataset_dir=str(phantom_dir), dataset_format="phantom", output_dir=str(tmp_path / "run"), cuda_graphs=scope
    )
    with caplog.at_level("WARNING", logger="cardioseg.training"):
        network = workflow.parser.get_parsed_content("train#network")
        trainer = workflow.parser.get_parsed_content("train#trainer")
    assert network is workflow.parser.get_parsed_content("train#model")
    assert trainer._process_function == trainer._iteration  # MONAI's own iteration
    assert f"cuda_graphs {scope}: the network is on cpu, not CUDA; it runs without graphs" in caplog.text


def tiny_network(device: torch.device) -> DeepSupervision:
    torch.manual_seed(0)
    return DeepSupervision(build_unet("resnet18"), 2).to(device)


def tiny_trainer(device: torch.device, iteration_update=None, network=None) -> SupervisedTrainer:
    """The bundle's network, loss, optimiser and schedule at a tiny size, on 4 random batches of 4 (the same
    weights and batches every time)."""
    network = network or tiny_network(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.002, weight_decay=1e-4, fused=device.type == "cuda")
    shape, generator = (4, 1, 64, 64), torch.Generator().manual_seed(1)
    batches = [
        {
            "image": torch.rand(shape, generator=generator).to(device),
            "label": torch.randint(0, 4, shape, generator=generator).float().to(device),
        }
        for _ in range(4)
    ]
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=batches,
        network=network,
        optimizer=optimizer,
        loss_function=DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True, batch=True)),
        inferer=SimpleInferer(),
        amp=device.type == "cuda",
        amp_kwargs={"dtype": torch.bfloat16},
        decollate=False,
        optim_set_to_none=True,
        iteration_update=iteration_update,
    )
    trainer.lr_scheduler = WarmupCosineSchedule(optimizer, warmup_steps=1, t_total=6)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: engine.lr_scheduler.step())
    return without_loss_scaling(trainer)


def test_the_graphed_body_is_monai_s_training_step():
    """``GraphedTrainStep.step`` (what the graph holds) computes what MONAI's eager iteration does: the same
    loss and the same updated weights, here run eagerly on the CPU."""
    device = torch.device("cpu")
    eager, graphed = tiny_trainer(device), tiny_trainer(device)
    batch = eager.data_loader[0]
    expected = eager._iteration(eager, batch)
    step = GraphedTrainStep()
    step.inputs = {key: value.clone() for key, value in batch.items()}
    graphed.optimizer.zero_grad(set_to_none=True)
    output = step.step(graphed)
    assert torch.equal(output["loss"], expected["loss"].detach())
    for ours, theirs in zip(graphed.network.parameters(), eager.network.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_the_training_state_goes_back_into_the_same_tensors():
    """After the warm-up steps before a capture: the weights, the batch-norm statistics and the optimiser's
    state as they were, in the tensors the graph holds; state made by the warm-up starts again at zero."""
    trainer = tiny_trainer(torch.device("cpu"))
    network, optimizer = trainer.network, trainer.optimizer
    trainer._iteration(trainer, trainer.data_loader[0])  # the optimiser has state, as after a resume
    first = {name: value.clone() for name, value in network.state_dict().items()}
    moments = {param: state["exp_avg"].clone() for param, state in optimizer.state.items()}
    stored = {name: value.data_ptr() for name, value in network.state_dict().items()}
    state = TrainingState(network, optimizer)
    trainer._iteration(trainer, trainer.data_loader[1])
    assert not all(torch.equal(value, first[name]) for name, value in network.state_dict().items())
    state.restore()
    assert all(torch.equal(value, first[name]) for name, value in network.state_dict().items())
    assert {name: value.data_ptr() for name, value in network.state_dict().items()} == stored
    assert all(torch.equal(optimizer.state[param]["exp_avg"], moment) for param, moment in moments.items())

    fresh = tiny_trainer(torch.device("cpu"))
    state = TrainingState(fresh.network, fresh.optimizer)
    fresh._iteration(fresh, fresh.data_loader[0])
    state.restore()
    assert all(float(s["step"]) == 0 and not s["exp_avg_sq"].any() for s in fresh.optimizer.state.values())


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before")
def test_a_schedule_fills_the_captured_learning_rate_in_place():
    """A float learning rate would be frozen into the graph; the tensor ``make_capturable`` puts in its
    place must be the one the schedule changes, along the schedule a float follows."""
    graphed, eager = tiny_trainer(torch.device("cpu")), tiny_trainer(torch.device("cpu"))
    make_capturable(graphed.optimizer, torch.device("cpu"))
    lr = graphed.optimizer.param_groups[0]["lr"]
    for _ in range(3):
        graphed.lr_scheduler.step()
        eager.lr_scheduler.step()
        assert graphed.optimizer.param_groups[0]["lr"] is lr
        assert float(lr) == pytest.approx(eager.optimizer.param_groups[0]["lr"])


def test_the_captured_step_reads_no_value_on_the_host():
    """A capture fails on any host read of a device value (``.item()``, a branch on a tensor). The network's
    forward and backward run on fake tensors, and the bundle's loss on meta tensors: neither has values.
    (The loss's own small CPU tensors, which fake tensors would replace, are fine in a capture.)"""
    network = DeepSupervision(build_unet("resnet18"), 3)
    with FakeTensorMode(allow_non_fake_inputs=True):
        sum(pred.float().sum() for pred in network(torch.empty(2, 1, 64, 64))).backward()
    assert all(p.grad is not None for p in network.parameters())
    parser = ConfigParser()
    parser.read_config(str(TRAIN_CONFIG))
    preds = [torch.empty(2, 4, 64 >> i, 64 >> i, device="meta", requires_grad=True) for i in range(4)]
    parser.get_parsed_content("loss")(preds, torch.empty(2, 1, 64, 64, device="meta")).mean().backward()
    assert all(pred.grad is not None for pred in preds)


def record_loss(engine: SupervisedTrainer, losses: list[float]) -> None:
    losses.append(float(engine.state.output["loss"].detach()))


def eager_and_graphed(device: torch.device, scope: str) -> tuple[dict, dict, dict]:
    """Four steps of the same trainer eagerly and with ``scope``'s graphs: the starting weights, and each
    way's losses and trainer."""
    eager = tiny_trainer(device)
    start = copy.deepcopy(eager.network.state_dict())
    if scope == "step":
        graphed = tiny_trainer(device, iteration_update=GraphedTrainStep())
    else:
        plain = tiny_trainer(device)
        graphed = tiny_trainer(
            device, network=capture_training_graphs(plain.network, "network", plain.data_loader, True)
        )
    losses = {"eager": [], "graphed": []}
    for name, trainer in (("eager", eager), ("graphed", graphed)):
        trainer.add_event_handler(Events.ITERATION_COMPLETED, record_loss, losses[name])
        trainer.run()
    return start, losses, {"eager": eager, "graphed": graphed}


@needs_cuda
@pytest.mark.parametrize("scope", ["network", "step"])
def test_a_replayed_step_trains_as_the_eager_one(scope):
    """The same losses, and the same change to every weight and batch-norm statistic (to 5% of it: bfloat16,
    and cuDNN may pick other kernels in a capture), so the warm-up steps left no trace, the learning rate
    followed its schedule and the optimiser stepped in every replay."""
    start, losses, trainers = eager_and_graphed(torch.device("cuda"), scope)
    assert losses["graphed"][0] == pytest.approx(losses["eager"][0], rel=1e-3)
    assert losses["graphed"] == pytest.approx(losses["eager"], rel=2e-2)
    eager, graphed = (trainers[way].network.state_dict() for way in ("eager", "graphed"))
    for name, before in start.items():
        if before.is_floating_point():
            eager_change, graphed_change = eager[name].float() - before.float(), graphed[name].float() - before.float()
            assert (graphed_change - eager_change).norm() <= 0.05 * eager_change.norm() + 1e-6, name
    lr = [float(trainers[way].optimizer.param_groups[0]["lr"]) for way in ("eager", "graphed")]
    assert lr[1] == pytest.approx(lr[0])


@needs_cuda
def test_the_bundle_trains_and_resumes_with_the_step_graph(phantom_dir, tmp_path):
    """The bundle with ``cuda_graphs`` "step", weight average and deep supervision: the epochs of an eager
    run, within floating point, with the learning rate logged as a number; and a run stopped after an
    epoch resumes (its optimiser state and learning rate restored before the capture) to the same end."""
    common = {
        "dataset_dir": str(phantom_dir),
        "dataset_format": "phantom",
        "epochs": 2,
        "ema_decay": 0.9,
        "deep_supervision": 2,
        "deterministic": True,
    }
    bundle_workflow(output_dir=str(tmp_path / "eager"), **common).run()
    bundle_workflow(output_dir=str(tmp_path / "graphed"), cuda_graphs="step", **common).run()
    interrupted = bundle_workflow(output_dir=str(tmp_path / "resumed"), cuda_graphs="step", **common)
    trainer = interrupted.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda engine: engine.terminate())
    interrupted.run()
    bundle_workflow(output_dir=str(tmp_path / "resumed"), cuda_graphs="step", resume=True, **common).run()
    eager, graphed, resumed = (
        read_metrics(tmp_path / name / "metrics.jsonl") for name in ("eager", "graphed", "resumed")
    )
    assert [m["epoch"] for m in resumed] == [1, 2]
    for a, b, c in zip(eager, graphed, resumed, strict=True):
        assert isinstance(b["lr"], float) and b["lr"] == pytest.approx(a["lr"])
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-2)
        assert c["train_loss"] == pytest.approx(b["train_loss"], rel=2e-2)
        assert c["val_dice_mean"] == pytest.approx(b["val_dice_mean"], abs=0.05)
