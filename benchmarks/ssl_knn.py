"""Does natural-image pretraining learn? k-NN accuracy on held-out CIFAR images, pretrained vs random encoder.

The standard check of self-supervised features (as solo-learn and lightly report it): the encoder's pooled
features of labelled "bank" images vote, by cosine similarity, on the class of "query" images. Per class,
the first ``--pretrain-per-class`` images go to pretraining (labels unused), the next ``--bank-per-class``
form the bank and the rest the queries: neither bank nor queries are seen in pretraining. The random
encoder is the same network before pretraining (same seed), scored in the same run; every milestone
checkpoint the run writes (epochs 1-10, every second to 24, ...) is scored too, so one run gives the curve
"k-NN accuracy against pretraining epochs" (``ssl_knn_<device>.json`` and ``.png`` in benchmarks/results/).
``knn_top1`` uses the deepest (stride 32) map, as the protocol does; every other stride of the encoder is
scored beside it (a U-Net uses them all through its skip connections; at 32 px the deepest map is 1 x 1).
An ``--output-dir`` that already holds a finished run with the same settings is scored, not pretrained again.
An epoch is ``--epoch-length`` images drawn from the pretraining set (8,000 of 16,000: twice as many
checkpoints on the curve for the same compute).

    python -m benchmarks.ssl_knn --data ../shared/data/cifar10_subset --method simclr --encoder resnet18 \\
        --image-size 32 --epochs 10 --epoch-length 8000 --batch-size 128 --learning-rate 0.002 --p-blur 0
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS, device_tag, finished_run, run_config, save_plot, table, write_result
from cardioseg.data.imagefolder import list_images, load_image
from cardioseg.nets import build_encoder, build_unet, encoder_of, load_pretrained

RECIPE = Path(__file__).resolve().parents[1] / "pretraining" / "configs" / "generalist.json"


def split_per_class(root: Path, pretrain: int, bank: int) -> tuple[list[Path], list, list]:
    """Pretraining paths, and (path, class) pairs of the bank and the queries."""
    _, items = list_images(root)
    by_class: dict[int, list[Path]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    train, bank_items, queries = [], [], []
    for label, paths in sorted(by_class.items()):
        train += paths[:pretrain]
        bank_items += [(p, label) for p in paths[pretrain : pretrain + bank]]
        queries += [(p, label) for p in paths[pretrain + bank :]]
    return train, bank_items, queries


def link_folder(paths: list[Path], target: Path) -> Path:
    """An ImageFolder of symbolic links: the pretraining set without copying images."""
    for path in paths:
        link = target / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return target


def recipe_settings(args: argparse.Namespace) -> dict:
    """What the generalist recipe is run with (besides data and output folder)."""
    return {
        "method": args.method,
        "encoder": args.encoder,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "epoch_length": args.epoch_length,
        "batch_size": args.batch_size,
        "optimizer": "adamw",
        "learning_rate": args.learning_rate,
        "weight_decay": 1e-4,
        "warmup_epochs": args.warmup_epochs,
        "augmentation": json.loads(RECIPE.read_text())["augmentation"] | {"p_blur": args.p_blur},
        "seed": args.seed,
    }


def pretrain(args: argparse.Namespace, data: Path, out: Path) -> Path:
    """The generalist recipe on ``data``; returns the run's ``models`` folder (milestones and final.pt)."""
    run_config(RECIPE, "pretraining", out, data=[str(data)], **recipe_settings(args))
    return out / "models"


def load_images(items: list, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey images resized to ``size`` (as pretraining saw them), ``(N, 1, size, size)``, and their labels."""
    images = torch.stack([torch.from_numpy(load_image(p, grayscale=True)) for p, _ in items])
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images, torch.tensor([label for _, label in items])


STRIDES = (2, 4, 8, 16, 32)


@torch.inference_mode()
def features(encoder: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """L2-normalised pooled features of each of the encoder's five maps (strides 2 to 32), in eval mode."""
    encoder.eval()
    maps = [encoder(batch) for batch in images.split(256)]
    return [torch.cat([F.normalize(m[i].mean(dim=(2, 3)), dim=1) for m in maps]) for i in range(len(STRIDES))]


def knn_accuracy(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Weighted k-NN (Wu et al. 2018, the protocol solo-learn and lightly use): each of the ``k`` most
    similar bank images votes for its class with weight exp(similarity / temperature)."""
    similarity = queries @ bank.T
    top, index = similarity.topk(k, dim=1)
    votes = torch.zeros(len(queries), int(bank_labels.max()) + 1)
    votes.scatter_add_(1, bank_labels[index], (top / temperature).exp())
    return float((votes.argmax(1) == labels).float().mean())


def score(encoder: torch.nn.Module, bank: tuple, queries: tuple) -> dict[int, float]:
    """k-NN top-1 of the queries against the bank (each an ``(images, labels)`` pair), per encoder stride."""
    bank_features, query_features = features(encoder, bank[0]), features(encoder, queries[0])
    return {
        stride: knn_accuracy(b, bank[1], q, queries[1])
        for stride, b, q in zip(STRIDES, bank_features, query_features, strict=True)
    }


def score_checkpoint(path: Path, encoder: str, bank: tuple, queries: tuple) -> dict[int, float]:
    unet = build_unet(encoder, out_channels=1)
    load_pretrained(unet, path)
    return score(encoder_of(unet), bank, queries)


def curve_plot(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for stride, colour in ((32, "C0"), (16, "C1")):
        epochs, accuracy = [r["epoch"] for r in rows[1:]], [r["knn_by_stride"][stride] for r in rows[1:]]
        ax.plot(epochs, accuracy, marker="o", color=colour, label=f"pretrained, stride-{stride} features")
        ax.axhline(rows[0]["knn_by_stride"][stride], color=colour, linestyle="--", label=f"random, stride {stride}")
    ax.set(xlabel="pretraining epoch", ylabel="k-NN top-1 on held-out images", title=title)
    return save_plot(fig, ax, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifar10_subset"))
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-length", type=int, default=8000, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument(
        "--p-blur",
        type=float,
        default=0.0,
        help="chance of the recipe's Gaussian blur (SimCLR's CIFAR setting has none, and the recorded result "
        "was made without it)",
    )
    parser.add_argument("--pretrain-per-class", type=int, default=1600)
    parser.add_argument("--bank-per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result-name", default="ssl_knn", help="benchmarks/results/NAME_<device>.json and .png")
    parser.add_argument("--output-dir", type=Path, help="keep the pretraining run here (default: temporary)")
    args = parser.parse_args()

    train, bank_items, query_items = split_per_class(args.data, args.pretrain_per_class, args.bank_per_class)
    bank, queries = load_images(bank_items, args.image_size), load_images(query_items, args.image_size)
    torch.manual_seed(args.seed)
    scores = {0: score(build_encoder(args.encoder), bank, queries)}
    with tempfile.TemporaryDirectory(prefix="ssl_knn_") as work:
        out = args.output_dir or Path(work) / "run"
        if args.output_dir and finished_run(out, recipe_settings(args)):
            print(f"scoring the finished pretraining run in {out}")
            models = out / "models"
        else:
            models = pretrain(args, link_folder(train, Path(work) / "images"), out)
        run_log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        for path in sorted(models.glob("epoch_*.pt")):
            scores[int(path.stem.split("_")[1])] = score_checkpoint(path, args.encoder, bank, queries)
        if args.epochs not in scores:  # the last epoch is no milestone: final.pt holds it
            scores[args.epochs] = score_checkpoint(models / "final.pt", args.encoder, bank, queries)
    losses = {line["epoch"]: line["train_loss"] for line in run_log}
    rows = []
    for epoch, by_stride in scores.items():
        by_stride = {stride: round(accuracy, 4) for stride, accuracy in by_stride.items()}
        random = rows[0]["knn_by_stride"] if rows else by_stride
        rows.append(
            {
                "epoch": epoch,
                "encoder": f"random {args.encoder}" if epoch == 0 else f"{args.method} {args.encoder}",
                "train_loss": losses.get(epoch, ""),
                "knn_top1": by_stride[32],
                "gain_points": round(100 * (by_stride[32] - random[32]), 1),
                "knn_stride16": by_stride[16],
                "gain16_points": round(100 * (by_stride[16] - random[16]), 1),
                "knn_by_stride": by_stride,
            }
        )
    columns = ["epoch", "encoder", "train_loss", "knn_top1", "gain_points", "knn_stride16", "gain16_points"]
    print(table(rows, columns))
    path = write_result(
        args.result_name,
        {
            "rows": rows,
            "random_knn_top1": rows[0]["knn_top1"],
            "final_knn_top1": rows[-1]["knn_top1"],
            "best_knn_top1": max(r["knn_top1"] for r in rows[1:]),
            "pretraining_seconds": run_log[-1]["train_seconds"],
            "images": {"pretrain": len(train), "bank": len(bank_items), "queries": len(query_items)},
            "knn": {
                "k": 20,
                "temperature": 0.07,
                "features": "global average of each encoder map (knn_top1: the deepest, stride 32), L2-normalised, "
                "eval mode",
            },
            "settings": vars(args),
        },
    )
    print(f"wrote {path}")
    title = f"{args.method} {args.encoder}, {args.image_size} px grey CIFAR-10, {len(train)} images"
    print("wrote", curve_plot(rows, RESULTS / f"{args.result_name}_{device_tag()}.png", title))


if __name__ == "__main__":
    main()
