"""Reader for natural images in ImageFolder layout (``root/<class>/<image>``), as ImageNet's train folder.

The same code reads ``../shared/data/cifar10_subset`` and a real ImageNet train folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .records import Record
from .validate import check_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp"}


def image_root(root: Path) -> Path:
    """ImageNet-style roots hold ``train/``; accept either that root or the class level itself."""
    return root / "train" if (root / "train").is_dir() else root


def list_images(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted, as torchvision's ImageFolder) and ``(path, class index)`` per image."""
    base = image_root(Path(root))
    classes = sorted(d.name for d in base.iterdir() if d.is_dir()) if base.is_dir() else []
    items = [
        (path, index)
        for index, name in enumerate(classes)
        for path in sorted((base / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise DataError(root, "no images in ImageFolder layout (root/<class>/<image>) found")
    return classes, items


def load_image(path: Path, grayscale: bool = False) -> np.ndarray:
    """``(channels, H, W)`` float32 in [0, 1]; grayscale uses ITU-R 601 luma as PIL's ``L`` mode."""
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("L" if grayscale else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"not a readable image ({exc})") from None
    return array[None] if grayscale else array.transpose(2, 0, 1)


def read_imagefolder(root: str | Path, grayscale: bool = False) -> Iterator[Record]:
    """Yield one Record per image; ``category`` is the class index, ``patient`` the class name."""
    classes, items = list_images(root)
    for path, index in items:
        yield Record(
            image=check_image(load_image(path, grayscale), str(path)),
            patient=classes[index],
            source=str(path),
            category=index,
        )
