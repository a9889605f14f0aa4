"""One pretraining run, as a recipe (``pretraining/configs/*.json``) drives it: check, prepare, run.

The recipe names the method and holds the numbers; the steps that can fail on a user's input run here,
in this order, so that nothing is written before everything that can be checked has been: settings and
output folder (and, for a resume, ``last.pt``), then the init weights (loaded into a bare network), then
the data, and only then the run folder is claimed and ``data.json`` written. The engine reuses what
fine-tuning uses: the run folder's lock and checks (``RunFolder``), the per-epoch JSON log, resumable
``last.pt``, progress bars, MONAI's LR-schedule handler.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from monai.handlers import LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule

from ..atomic import write_text_atomic
from ..engine.epoch_log import EpochLog
from ..engine.progress import attach_progress_bar
from ..engine.resume import check_resume
from ..engine.seeding import seed_run
from ..errors import show_cause_last
from ..nets import LoadedWeights, build_unet, load_pretrained
from ..run_folder import RunFolder
from ..settings import SettingError, as_flag
from . import METHODS, PretrainMethod, build_method
from .checkpoints import PretrainCheckpointer, init_chain
from .data import PretrainData, load_pretrain_data
from .loader import ViewLoader
from .settings import check_pretrain_settings, check_run_options
from .trainer import PretrainTrainer, build_optimizer
from .views import ViewConfig

logger = logging.getLogger("cardioseg.ssl")


class Pretraining:
    """A pretraining run into ``output_dir``. Making one checks the settings, flags and folder (reads
    nothing else, writes nothing); ``prepare`` loads and claims; ``run`` trains.

    Under DDP (``rank``/``world_size``, from ``pretraining/configs/multi_gpu_pretrain.json``) every process
    trains on its share of each global batch and averages gradients; only rank 0 owns the run folder (its
    checks, claim, record, log and checkpoints), and the others wait for its claim."""

    def __init__(
        self,
        settings: dict[str, Any],
        output_dir: str | Path,
        options: dict[str, Any],
        device: torch.device | str = "cpu",
        bf16: bool = False,
        progress: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        show_cause_last()
        self.rank, self.world_size = int(rank), int(world_size)
        self.flags = check_run_options(output_dir, options)
        self.settings = check_pretrain_settings(settings)
        self.folder = RunFolder(output_dir)
        self.device = torch.device(device)
        self.bf16 = as_flag(bf16, "amp")
        self.progress = as_flag(progress, "progress")
        if self.is_main:  # the others would find rank 0's claim (a run folder) and refuse it
            self.folder.check(self.flags["resume"], self.flags["overwrite"], self.settings)
        if self.flags["resume"]:
            check_resume(self.ckpt_dir, self.settings["epochs"])
        self.trainer: PretrainTrainer | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def ckpt_dir(self) -> Path:
        return self.folder.path / "models"

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last on CUDA, where convolutions run faster in it, as fine-tuning does."""
        return torch.channels_last if self.device.type == "cuda" else torch.contiguous_format

    def prepare(self) -> PretrainTrainer:
        """Init weights checked, data read, method built and initialised, run folder claimed and recorded,
        engine built with its handlers."""
        s = self.settings
        check_init(s["encoder"], s["init"])
        data = load_pretrain_data(s["data"], s["image_size"], METHODS[s["method"]].needs_labels, self.progress)
        if len(data) < s["batch_size"] * self.world_size:  # a batch would repeat images: false negatives
            processes = f" x {self.world_size} processes" if self.world_size > 1 else ""
            raise SettingError("batch_size", s["batch_size"], f"exceeds the {len(data)} images of the data{processes}")
        seed_run(s["seed"], self.device.type == "cuda")
        method = build_method(s["method"], s["encoder"], s["method_options"], num_classes=len(data.classes))
        loaded = method.load_init(s["init"])
        method.to(self.device, memory_format=self.memory_format)
        record = self.record(method, data, loaded)
        if self.is_main:
            self.folder.claim(self.flags["resume"], self.flags["overwrite"], s)
            write_text_atomic(self.folder.record_path, json.dumps(record, indent=2) + "\n")
        if self.world_size > 1:
            torch.distributed.barrier()
        logger.info(
            "%s %s pretraining in %s: %d images (%s), init %s",
            "resuming" if self.flags["resume"] else "starting",
            s["method"],
            self.folder.path,
            len(data),
            ", ".join(f"{d['images']} {d['kind']} from {d['path']}" for d in record["data"]),
            s["init"],
        )
        self.trainer = self.build_engine(method, data, record)
        return self.trainer

    def record(self, method: PretrainMethod, data: PretrainData, loaded: LoadedWeights | None) -> dict[str, Any]:
        """``data.json``: settings, the init weights (file, sha256, header) and chain, the data counts."""
        return {
            "settings": self.settings,
            "method": {"name": method.name, "scope": method.scope, "branch": method.branch, "views": method.views},
            "init": None if loaded is None else loaded.describe(),
            "init_chain": init_chain(loaded),
            "data": data.describe(),
            "images": len(data),
            "classes": list(data.classes),
        }

    def build_engine(self, method: PretrainMethod, data: PretrainData, record: dict[str, Any]) -> PretrainTrainer:
        s = self.settings
        batch_size, epochs = s["batch_size"], s["epochs"]
        loader = ViewLoader(
            data,
            batch_size=batch_size,
            device=self.device,
            views=method.views,
            augment=ViewConfig.from_settings(s["augmentation"]),
            seed=s["seed"],
            epoch_length=s["epoch_length"],
            channels_last=self.memory_format == torch.channels_last,
            rank=self.rank,
            world_size=self.world_size,
        )
        optimizer = build_optimizer(s["optimizer"], method, s["learning_rate"], s["weight_decay"])
        steps = len(loader)
        scheduler = WarmupCosineSchedule(optimizer, warmup_steps=s["warmup_epochs"] * steps, t_total=epochs * steps)
        trainer = PretrainTrainer(
            self.device,
            epochs,
            loader,
            method,
            optimizer,
            bf16=self.bf16,
            world_size=self.world_size,
            train_handlers=[LrScheduleHandler(scheduler, print_lr=False, epoch_level=False)],
        )
        epoch_log = EpochLog(self.folder.path / "metrics.jsonl", batch_size, self.world_size, name="cardioseg.ssl")
        header = {
            "source": "random" if record["init"] is None else record["init"]["source"],
            "extra": {
                "recipe": s.get("recipe"),
                "scope": method.scope,
                "branch": method.branch,
                "image_size": s["image_size"],
                "data": record["data"],
                "images": record["images"],
                "init_chain": record["init_chain"],
                "settings": s,
            },
        }
        objects = {
            "method": method,
            "optimizer": optimizer,
            "lr_scheduler": scheduler,
            "trainer": trainer,
            "epoch_log": epoch_log,
        }
        checkpointer = PretrainCheckpointer(self.ckpt_dir, objects, method, header)
        loader.attach(trainer)
        if self.is_main:
            epoch_log.attach(trainer)
        checkpointer.attach(trainer, resume=self.flags["resume"], save=self.is_main)
        attach_progress_bar(trainer, self.progress and self.is_main)
        return trainer

    def run(self) -> None:
        if self.trainer is None:
            self.prepare()
        self.trainer.run()


def check_init(encoder: str, init: str) -> None:
    """Load the init weights into a bare U-Net, so weights that do not fit (another encoder depth, a file
    that is no checkpoint) fail before any data is read or file written."""
    load_pretrained(build_unet(encoder, out_channels=1), init)
