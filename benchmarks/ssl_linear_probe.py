"""Does cardiac pretraining learn features? A linear segmentation probe of frozen encoders on real ACDC.

The linear probe of self-supervised learning (MAE's: a BatchNorm without affine parameters, then a linear
classifier), for segmentation: each of the encoder's five feature maps (strides 2 to 32), frozen in eval
mode, is standardised per channel, mapped by a 1x1 convolution to the 4 classes and upsampled bilinearly to
the image; the sum is a linear classifier of each pixel's multi-scale features. Only the 1x1 convolutions
train (DiceCE as fine-tuning, AdamW, warm-up and cosine), on every slice of the SSL4MIS *train* patients
(Bernard et al., IEEE TMI 2018), without augmentation, so what it reaches measures the features, not a
decoder's ability to make up for them. Validation is the bundle's: 3D Dice per volume on the 10 ``val.txt``
patients, mean of RV, MYO and LV. A random encoder (the U-Net's initialisation under the seed) is probed
alike in the same run, beside each pretrained one (the specialist recipe, as ``ssl_probe`` pretrains it;
the same ``--output-dir`` reuses its checkpoints). ``ssl_linear_probe_<device>.json`` and ``.png``.

    python -m benchmarks.ssl_linear_probe --dataset-dir ../shared/data/acdc_ssl4mis --methods mim byol \\
        --encoder resnet18 --image-size 64 --pretrain-epochs 10 --epochs 30 --seeds 0 1
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.optimizers import WarmupCosineSchedule

from benchmarks.common import RESULTS, device_tag, save_plot, table, write_result
from benchmarks.ssl_probe import add_pretrain_arguments, pretrain
from cardioseg.nets import build_unet, encoder_of, load_pretrained
from cardioseg.training.data import prepare_finetune_data
from cardioseg.training.loaders import TrainSliceLoader, VolumeLoader, slices_to_volume

CLASSES = ("RV", "MYO", "LV")


class LinearProbe(torch.nn.Module):
    """Per-pixel logits, linear in the standardised features of every encoder stage."""

    def __init__(self, channels: Sequence[int], classes: int = 4):
        super().__init__()
        self.norms = torch.nn.ModuleList(torch.nn.BatchNorm2d(c, affine=False) for c in channels)
        self.heads = torch.nn.ModuleList(torch.nn.Conv2d(c, classes, 1) for c in channels)

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        logits = [head(norm(f)) for norm, head, f in zip(self.norms, self.heads, features, strict=True)]
        return sum(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False) for x in logits)


def frozen_encoder(args: argparse.Namespace, seed: int, checkpoint: Path | None) -> torch.nn.Module:
    torch.manual_seed(seed)
    unet = build_unet(args.encoder)
    load_pretrained(unet, checkpoint)
    return encoder_of(unet).eval().requires_grad_(False)


def validate(encoder: torch.nn.Module, probe: LinearProbe, loader: VolumeLoader) -> dict[str, float]:
    metric = DiceMetric(include_background=False, reduction="mean_batch")
    probe.eval()
    with torch.no_grad():
        for volume in loader:
            logits = probe(encoder(volume["image"]), volume["image"].shape[-2:])
            scored = slices_to_volume({"pred": logits, "label": volume["label"]})
            metric(scored["pred"], scored["label"])
    per_class = [round(float(v), 5) for v in metric.aggregate()]
    return dict(zip(CLASSES, per_class)) | {"mean": round(sum(per_class) / len(per_class), 5)}


def probe_run(args: argparse.Namespace, data, encoder: torch.nn.Module, seed: int) -> list[dict]:
    """Train the probe on frozen features; the validation Dice every ``--val-every`` epochs."""
    loader = TrainSliceLoader(
        data.train, data.labelled, args.batch_size, "cpu", seed=seed, epoch_length=len(data.train)
    )
    volumes = VolumeLoader(data.val, "cpu")
    with torch.no_grad():
        channels = [f.shape[1] for f in encoder(next(iter(loader))["image"])]
    torch.manual_seed(seed)
    probe = LinearProbe(channels)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=args.learning_rate, weight_decay=0.0)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=len(loader), t_total=args.epochs * len(loader))
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    curve = []
    for epoch in range(1, args.epochs + 1):
        loader.epoch = epoch
        probe.train()
        for batch in loader:
            with torch.no_grad():
                features = encoder(batch["image"])
            loss = loss_function(probe(features, batch["image"].shape[-2:]), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch % args.val_every == 0 or epoch == args.epochs:
            curve.append(
                {"epoch": epoch, "train_loss": round(loss.item(), 5), "val_dice": validate(encoder, probe, volumes)}
            )
            print(f"  epoch {epoch}: loss {loss.item():.4f}, val Dice {curve[-1]['val_dice']['mean']:.4f}", flush=True)
    return curve


def curves_plot(curves: dict[str, list[dict]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    inits = sorted({name.split(" seed")[0] for name in curves})
    for name, curve in curves.items():
        colour = f"C{inits.index(name.split(' seed')[0])}"
        ax.plot([c["epoch"] for c in curve], [c["val_dice"]["mean"] for c in curve], color=colour, label=name)
    ax.set(xlabel="probe epoch", ylabel="mean validation Dice (RV, MYO, LV)", title=title, ylim=(0, None))
    return save_plot(fig, ax, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pretrain_arguments(parser)
    parser.add_argument("--epochs", type=int, default=30, help="probe epochs over every training slice")
    parser.add_argument("--val-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output-dir", type=Path, help="pretraining runs here (default: a temporary folder)")
    args = parser.parse_args()

    work = args.output_dir or Path(tempfile.mkdtemp(prefix="ssl_linear_probe_"))
    checkpoints = {"random": None} | {m: pretrain(args, m, work / f"pretrain_{m}") for m in args.methods}
    data = prepare_finetune_data(args.dataset_dir, "ssl4mis", image_size=args.image_size)
    rows, curves = [], {}
    for seed in args.seeds:
        for init, checkpoint in checkpoints.items():
            print(f"{init}, seed {seed}", flush=True)
            curve = probe_run(args, data, frozen_encoder(args, seed, checkpoint), seed)
            curves[f"{init} seed {seed}"] = curve
            rows.append({"init": init, "seed": seed, **curve[-1]["val_dice"]})
    for init in checkpoints:
        mine = [r for r in rows if r["init"] == init and r["seed"] != "mean"]
        rows.append(
            {"init": init, "seed": "mean"}
            | {k: round(sum(r[k] for r in mine) / len(mine), 4) for k in ("mean", *CLASSES)}
        )
    print(table(rows, ["init", "seed", "mean", *CLASSES]))
    result = {
        "rows": rows,
        "curves": curves,
        "checkpoints": {k: None if v is None else str(v) for k, v in checkpoints.items()},
        "settings": vars(args),
        "data_citation": "Bernard et al., IEEE TMI 37(11) 2514-2525, 2018 (ACDC); SSL4MIS split",
    }
    print("wrote", write_result("ssl_linear_probe", result))
    title = f"linear probe of frozen encoders, {args.encoder}, {args.image_size} px"
    print("wrote", curves_plot(curves, RESULTS / f"ssl_linear_probe_{device_tag()}.png", title))


if __name__ == "__main__":
    main()
