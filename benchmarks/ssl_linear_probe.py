"""Does cardiac pretraining learn features? A linear segmentation probe of frozen encoders on real ACDC.

The linear probe of self-supervised learning (MAE's: a BatchNorm without affine parameters, then a linear classifier),
for segmentation: each of the encoder's five feature maps (strides 2 to 32), frozen in eval mode, is standardised per
channel, mapped by a 1x1 convolution to the 4 classes and upsampled bilinearly to the image; the sum is a linear
classifier of each pixel's multi-scale features. Only the 1x1 convolutions train (DiceCE as fine-tuning, AdamW, warm-up
and cosine), on every slice of the SSL4MIS *train* patients (Bernard et al., IEEE TMI 2018), without augmentation, so
what it reaches measures the features, not a decoder's ability to make up for them. The encoder's BatchNorm statistics
are first measured again on those slices (torch's ``update_bn``; no weight changes), as the bundle's ``freeze_encoder``
lets them follow the data: a random encoder's are its initial (0, 1), a masked-image-modelling encoder's were measured
on images 60% blanked, and neither describes these images (``--keep-bn-statistics`` probes them as saved). Validation is
the bundle's: 3D Dice per volume on the 10 ``val.txt`` patients, mean of RV, MYO and LV. A random encoder (the U-Net's
initialisation under the seed) is probed alike in the same run, beside each pretrained one (the specialist recipe, as
``ssl_probe`` pretrains it; the same ``--output-dir`` reuses its checkpoints), and with ``--checkpoint-epochs`` each
method's earlier checkpoints of the same run too, which shows how the features change with pretraining length (the
paper's "are fewer than 5 epochs enough?"); ``--checkpoints FILE ...`` probes pretraining checkpoints already made
(named METHOD@EPOCH from their headers) instead of pretraining. ``ssl_linear_probe_<device>.json`` and ``.png``; on CUDA
where present.

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
from torch.optim.swa_utils import update_bn

from benchmarks.common import RESULTS, device_tag, save_plot, table, write_result
from benchmarks.ssl_probe import add_pretrain_arguments, pretrain
from cardioseg.checkpoint import load_checkpoint
from cardioseg.nets import build_unet, encoder_of, load_pretrained
from cardioseg.training.data import prepare_finetune_data
from cardioseg.training.loaders import VolumeLoader, slices_to_volume

CLASSES = ("RV", "MYO", "LV")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    return encoder_of(unet).eval().requires_grad_(False).to(DEVICE)


def probed_checkpoints(args: argparse.Namespace, work: Path) -> dict[str, Path | None]:
    """``random``, then per method ``METHOD@EPOCHS`` for each ``--checkpoint-epochs`` and the last epoch; or,
    with ``--checkpoints``, those files, named by their headers."""
    checkpoints: dict[str, Path | None] = {"random": None}
    if args.checkpoints:
        for path in args.checkpoints:
            meta = load_checkpoint(path)[1]
            if "method" not in meta or "epoch" not in meta:
                raise SystemExit(f"{path}: no method and epoch in its header: not a cardioseg pretraining checkpoint")
            checkpoints[f"{meta['method']}@{meta['epoch']}"] = path
        return checkpoints
    for method in args.methods:
        final = pretrain(args, method, work / f"pretrain_{method}")
        for epoch in sorted(set(args.checkpoint_epochs) - {args.pretrain_epochs}):
            path = final.with_name(f"epoch_{epoch:04d}.pt")
            if not path.is_file():
                raise SystemExit(f"{path}: no checkpoint after pretraining epoch {epoch} (see the recipe's schedule)")
            checkpoints[f"{method}@{epoch}"] = path
        checkpoints[f"{method}@{args.pretrain_epochs}"] = final
    return checkpoints


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


def encoded(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Every image's map at each encoder stage, computed once: the encoder is frozen and the probe sees no
    augmentation, so each epoch would compute the same maps again (on the CPU, most of a probe's time)."""
    with torch.no_grad():
        batches = [encoder(part) for part in images.split(batch_size)]
    return [torch.cat(stage) for stage in zip(*batches, strict=True)]


def probe_run(args: argparse.Namespace, data, encoder: torch.nn.Module, seed: int) -> list[dict]:
    """Train the probe on frozen features; the validation Dice every ``--val-every`` epochs."""
    images = torch.from_numpy(data.train.images[data.labelled]).unsqueeze(1).to(DEVICE)
    labels = torch.from_numpy(data.train.labels[data.labelled]).unsqueeze(1).float().to(DEVICE)
    if not args.keep_bn_statistics:
        update_bn(images.split(args.batch_size), encoder)
    features = encoded(encoder, images, args.batch_size)
    volumes = VolumeLoader(data.val, DEVICE)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    probe = LinearProbe([f.shape[1] for f in features]).to(DEVICE)
    steps = -(-len(labels) // args.batch_size)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=args.learning_rate, weight_decay=0.0)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=steps, t_total=args.epochs * steps)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    curve = []
    for epoch in range(1, args.epochs + 1):
        probe.train()
        for batch in torch.randperm(len(labels), generator=generator).split(args.batch_size):
            batch = batch.to(DEVICE)
            loss = loss_function(probe([f[batch] for f in features], labels.shape[-2:]), labels[batch])
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


def probe_plot(curves: dict[str, list[dict]], means: list[dict], path: Path, title: str) -> Path:
    """Left: validation Dice over probe epochs, per encoder and seed. Right: the last epoch's Dice (mean over
    seeds) against pretraining epochs, per method, from the random encoder at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, by_length) = plt.subplots(1, 2, figsize=(12, 4))
    inits = list(dict.fromkeys(name.split(" seed")[0] for name in curves))
    methods = list(dict.fromkeys(init.split("@")[0] for init in inits))  # random first: colour C0
    for name, curve in curves.items():
        init = name.split(" seed")[0]
        method = init.split("@")[0]
        checkpoints = [i for i in inits if i.split("@")[0] == method]
        alpha = 0.25 + 0.75 * (checkpoints.index(init) + 1) / len(checkpoints)  # fainter: earlier checkpoint
        dice = [c["val_dice"]["mean"] for c in curve]
        ax.plot([c["epoch"] for c in curve], dice, color=f"C{methods.index(method)}", alpha=alpha, label=name)
    ax.set(xlabel="probe epoch", ylabel="mean validation Dice (RV, MYO, LV)", title=title, ylim=(0, None))
    random = next(m["mean"] for m in means if m["init"] == "random")
    for i, method in enumerate(methods[1:], start=1):
        points = sorted((int(m["init"].split("@")[1]), m["mean"]) for m in means if m["init"].startswith(f"{method}@"))
        epochs, dice = zip(*[(0, random), *points], strict=True)
        by_length.plot(epochs, dice, "o-", color=f"C{i}", label=method)
    by_length.axhline(random, color="C0", linestyle=":", label="random encoder")
    by_length.set(xlabel="pretraining epochs", ylabel="last probe epoch's Dice, mean of seeds", title="by pretraining")
    return save_plot(fig, (ax, by_length), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pretrain_arguments(parser)
    parser.add_argument("--epochs", type=int, default=30, help="probe epochs over every training slice")
    parser.add_argument("--val-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--keep-bn-statistics", action="store_true", help="the encoders' BatchNorm statistics as saved")
    parser.add_argument("--checkpoints", type=Path, nargs="+", help="probe these pretraining checkpoints instead")
    parser.add_argument("--checkpoint-epochs", type=int, nargs="*", default=[], help="also probe after these epochs")
    parser.add_argument("--output-dir", type=Path, help="pretraining runs here (default: a temporary folder)")
    parser.add_argument("--out-dir", type=Path, help="write the result and plot here (default: benchmarks/results)")
    parser.add_argument("--name", default="ssl_linear_probe", help="result file name, before _<device>.json")
    args = parser.parse_args()

    work = args.output_dir or Path(tempfile.mkdtemp(prefix="ssl_linear_probe_"))
    checkpoints = probed_checkpoints(args, work)
    data = prepare_finetune_data(args.dataset_dir, args.dataset_format, image_size=args.image_size)
    rows, curves = [], {}
    for seed in args.seeds:
        for init, checkpoint in checkpoints.items():
            print(f"{init}, seed {seed}", flush=True)
            curve = probe_run(args, data, frozen_encoder(args, seed, checkpoint), seed)
            curves[f"{init} seed {seed}"] = curve
            rows.append({"init": init, "seed": seed, **curve[-1]["val_dice"]})
    means = []
    for init in checkpoints:
        mine = [r for r in rows if r["init"] == init]
        means.append(
            {"init": init, "seed": "mean"}
            | {k: round(sum(r[k] for r in mine) / len(mine), 4) for k in ("mean", *CLASSES)}
        )
    rows += means
    print(table(rows, ["init", "seed", "mean", *CLASSES]))
    result = {
        "rows": rows,
        "curves": curves,
        "checkpoints": {k: None if v is None else str(v) for k, v in checkpoints.items()},
        "settings": vars(args),
        "data_citation": "Bernard et al., IEEE TMI 37(11) 2514-2525, 2018 (ACDC); SSL4MIS split",
    }
    print("wrote", write_result(args.name, result, args.out_dir))
    title = f"linear probe of frozen encoders, {args.encoder}, {args.image_size} px"
    title += ", BN statistics as saved" if args.keep_bn_statistics else ", BN statistics measured"
    print("wrote", probe_plot(curves, means, (args.out_dir or RESULTS) / f"{args.name}_{device_tag()}.png", title))


if __name__ == "__main__":
    main()
