"""Does natural-image pretraining learn? k-NN accuracy on held-out CIFAR images, pretrained vs random encoder.

The standard check of self-supervised features (as solo-learn and lightly report it): the encoder's pooled
features of labelled "bank" images vote, by cosine similarity, on the class of "query" images. Per class,
the first ``--pretrain-per-class`` images go to pretraining (labels unused), the next ``--bank-per-class``
form the bank and the rest the queries: neither bank nor queries are seen in pretraining. The random
encoder is the same network before pretraining (same seed), scored in the same run.

    python -m benchmarks.ssl_knn --data ../shared/data/cifar10_subset --method simclr --encoder resnet18 \
        --image-size 32 --epochs 3 --batch-size 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.bundle import ConfigWorkflow

from benchmarks.common import table, write_result
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


def pretrain(args: argparse.Namespace, data: Path, out: Path) -> Path:
    workflow = ConfigWorkflow(
        config_file=str(RECIPE),
        logging_file=str(RECIPE.with_name("logging.conf")),
        run_id="pretraining",
        workflow_type=None,
        method=args.method,
        encoder=args.encoder,
        data=[str(data)],
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="adamw",
        learning_rate=args.learning_rate,
        weight_decay=1e-4,
        warmup_epochs=1,
        seed=args.seed,
        output_dir=str(out),
        progress=False,
    )
    workflow.initialize()
    workflow.run()
    return out / "models" / "final.pt"


@torch.inference_mode()
def features(encoder: torch.nn.Module, items: list, size: int) -> torch.Tensor:
    """L2-normalised pooled features of grey images resized to ``size``, as pretraining saw them."""
    encoder.eval()
    out = []
    for start in range(0, len(items), 256):
        batch = [torch.from_numpy(load_image(p, grayscale=True)) for p, _ in items[start : start + 256]]
        images = F.interpolate(torch.stack(batch), size=(size, size), mode="bilinear", align_corners=False)
        out.append(F.normalize(encoder(images)[-1].mean(dim=(2, 3)), dim=1))
    return torch.cat(out)


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


def score(encoder: torch.nn.Module, bank: list, queries: list, size: int) -> float:
    bank_labels = torch.tensor([label for _, label in bank])
    query_labels = torch.tensor([label for _, label in queries])
    return knn_accuracy(features(encoder, bank, size), bank_labels, features(encoder, queries, size), query_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifar10_subset"))
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--pretrain-per-class", type=int, default=1600)
    parser.add_argument("--bank-per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, bank, queries = split_per_class(args.data, args.pretrain_per_class, args.bank_per_class)
    torch.manual_seed(args.seed)
    random_encoder = build_encoder(args.encoder)
    rows = [
        {
            "encoder": f"random {args.encoder}",
            "knn_top1": round(score(random_encoder, bank, queries, args.image_size), 4),
        }
    ]
    with tempfile.TemporaryDirectory(prefix="ssl_knn_") as work:
        start = time.perf_counter()
        checkpoint = pretrain(args, link_folder(train, Path(work) / "images"), Path(work) / "run")
        seconds = time.perf_counter() - start
        unet = build_unet(args.encoder, out_channels=1)
        load_pretrained(unet, checkpoint)
    accuracy = score(encoder_of(unet), bank, queries, args.image_size)
    rows.append({"encoder": f"{args.method} {args.encoder}, {args.epochs} epochs", "knn_top1": round(accuracy, 4)})
    print(table(rows, ["encoder", "knn_top1"]))
    path = write_result(
        "ssl_knn",
        {
            "rows": rows,
            "pretraining_seconds": round(seconds, 1),
            "images": {"pretrain": len(train), "bank": len(bank), "queries": len(queries)},
            "settings": vars(args) | {"data": str(args.data)},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
