"""Where a training step's arithmetic goes: FLOPs of the U-Net's encoder, decoder and head, per image.

Counted with torch's ``FlopCounterMode`` (matrix multiplies and convolutions) on one image, forward alone
and forward plus backward, for the bundle's decoder (``decoder_channels`` 256, 128, 64, 32, 16: MONAI
FlexibleUNet's default) against a decoder of half the channels, in one run. The count is the same on any
machine; the GPU's peak divided by it bounds the images per second a training step can reach.

    python -m benchmarks.unet_flops --encoder resnet50 --image-size 256
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import table, write_result
from cardioseg.nets import build_unet

DECODERS = {"default": (256, 128, 64, 32, 16), "half": (128, 64, 32, 16, 16)}
PARTS = ("encoder", "decoder", "segmentation_head")


def count(encoder: str, decoder_channels: tuple[int, ...], image_size: int) -> dict:
    """GFLOP per image by part (forward) and in total (forward, forward + backward); parameters in millions."""
    network = build_unet(encoder, decoder_channels=decoder_channels)
    image = torch.randn(1, 1, image_size, image_size)
    with FlopCounterMode(display=False, depth=2) as forward:
        network(image)
    with FlopCounterMode(display=False) as step:
        network(image).sum().backward()
    by_module = {name: sum(ops.values()) for name, ops in forward.get_flop_counts().items()}
    row = {f"{part}_gflop": round(by_module.get(f"FlexibleUNet.{part}", 0) / 1e9, 2) for part in PARTS}
    return {
        **row,
        "forward_gflop": round(forward.get_total_flops() / 1e9, 2),
        "step_gflop": round(step.get_total_flops() / 1e9, 2),
        "params_m": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    rows = [
        {"decoder": name, "channels": list(channels), **count(args.encoder, channels, args.image_size)}
        for name, channels in DECODERS.items()
    ]
    for row in rows:
        row["step_ratio_to_default"] = round(row["step_gflop"] / rows[0]["step_gflop"], 2)
    columns = ["decoder", *(f"{p}_gflop" for p in PARTS), "forward_gflop", "step_gflop", "step_ratio_to_default"]
    print(table(rows, [*columns, "params_m"]))
    print("wrote", write_result("unet_flops", {"settings": vars(args), "results": rows}))


if __name__ == "__main__":
    main()
