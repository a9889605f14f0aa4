"""Reader for natural images in ImageFolder layout (``root/<class>/<image>``), as ImageNet's train folder.

The same code reads ``../shared/data/cifar10_subset`` and a real ImageNet train folder.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .records import Record
from .validate import check_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}  # torchvision's


def image_root(root: Path) -> Path:
    """ImageNet-style roots hold ``train/``; accept either that root or the class level itself."""
    return root / "train" if (root / "train").is_dir() else root


def _visible(folder: Path) -> list[Path]:
    """A folder's entries, sorted, without hidden ones (``.DS_Store``, ``.ipynb_checkpoints``)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_images(folder: Path) -> list[Path]:
    """The images of one class folder. Anything else in it is refused rather than skipped (torchvision
    skips it), so a class never silently loses files or ends up empty."""
    images = []
    for path in _visible(folder):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(path, f"not an image file: class folders hold only {', '.join(sorted(IMAGE_SUFFIXES))}")
        if not path.is_file():
            raise DataError(path, "is a folder, expected an image file")
        images.append(path)
    if not images:
        raise DataError(folder, "class folder holds no images")
    return images


def list_images(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted, as torchvision's ImageFolder) and ``(path, class index)`` per image."""
    base = image_root(Path(root))
    classes = [d.name for d in _visible(base) if d.is_dir()] if base.is_dir() else []
    if not classes:
        raise DataError(root, "no images in ImageFolder layout (root/<class>/<image>) found")
    items = [(path, index) for index, name in enumerate(classes) for path in _class_images(base / name)]
    return classes, items


def load_image(path: Path, grayscale: bool = False) -> np.ndarray:
    """``(channels, H, W)`` float32 in [0, 1]; grayscale uses ITU-R 601 luma as PIL's ``L`` mode.

    PIL's decompression-bomb warning (an image of over ~89 megapixels) is an error here: no natural image
    a network trains on is that large, and the warning would otherwise print and the memory be spent.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                array = _unit_range(img, grayscale)
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise DataError(path, f"not a readable image ({exc})") from None
    return array[None] if grayscale else array.transpose(2, 0, 1)


def _unit_range(img: Image.Image, grayscale: bool) -> np.ndarray:
    """``(H, W)`` greyscale or ``(H, W, 3)`` RGB in [0, 1]. 16-bit greyscale (``I;16``: medical PNG and TIFF
    exports) is scaled by its own range: PIL's conversion to 8 bits would clip it at 255."""
    if img.mode.startswith("I;16"):
        grey = np.asarray(img, dtype=np.float32) / 65535.0
        return grey if grayscale else np.stack([grey] * 3, axis=-1)
    return np.asarray(img.convert("L" if grayscale else "RGB"), dtype=np.float32) / 255.0


def read_imagefolder(root: str | Path, grayscale: bool = False) -> Iterator[Record]:
    """Yield one Record per image; ``category`` is the class index, ``patient`` the class name."""
    classes, items = list_images(root)
    for path, index in items:
        yield Record(
            image=check_image(load_image(path, grayscale), path),
            patient=classes[index],
            source=str(path),
            category=index,
        )
