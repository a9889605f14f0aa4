"""Pretraining images from every format the data layer reads, mixed on one square grid, counted per source.

Natural images (an ImageFolder: ``cifar10_subset`` here, ImageNet's train folder for those who have it)
are read in grey (ITU-R 601 luma: the encoder has one input channel), their shorter side resized to
``image_size`` and centre-cropped; their class folders are the labels of supervised pretraining. Cardiac
data become 2D slices resized as SSL4MIS does (``cardioseg.data.slicing``), each volume normalised to
[0, 1] at its (0, 99) percentiles where the format is not normalised already: every slice of the SSL4MIS
*train* patients (never ``val.txt``'s, which fine-tuning validates on), every frame of raw ACDC or phantom
4D cine, every frame of DICOM cine series, and the training patients of a slice cache. Each source's image
count goes into the run's record and every checkpoint's header.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.formats import detect_format, read_records
from ..data.slicing import SliceSet, to_slices
from ..errors import DataError
from ..settings import SettingError

logger = logging.getLogger("cardioseg.ssl")

NATURAL_FORMAT = "imagefolder"


@dataclass(frozen=True)
class Source:
    """One data path's images on the run's grid, and what they are."""

    path: str
    format: str
    images: np.ndarray  # (N, size, size) float32
    labels: np.ndarray | None  # class index per image (ImageFolder only)
    classes: tuple[str, ...]
    patients: int | None  # cardiac sources

    def describe(self) -> dict[str, Any]:
        kind = "natural" if self.format == NATURAL_FORMAT else "cardiac"
        found = {"path": self.path, "format": self.format, "kind": kind, "images": len(self.images)}
        if self.patients is not None:
            found["patients"] = self.patients
        if self.classes:
            found["classes"] = len(self.classes)
        return found


@dataclass(frozen=True)
class PretrainData:
    """All sources' images in one array (``(N, size, size)`` float32), with class labels when asked for."""

    images: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...]
    sources: tuple[Source, ...]

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> list[dict[str, Any]]:
        return [source.describe() for source in self.sources]


def load_pretrain_data(
    paths: Sequence[str | Path], image_size: int, labelled: bool = False, progress: bool = False
) -> PretrainData:
    """Read every path (its format detected) and put all images on an ``image_size`` grid.

    ``labelled``: supervised pretraining, which takes ImageFolders with the same classes only.
    """
    sources = [read_source(Path(path), image_size, progress) for path in paths]
    for source in sources:
        logger.info("pretraining data: %s (%s) gives %d images", source.path, source.format, len(source.images))
    labels, classes = None, ()
    if labelled:
        classes = sources[0].classes
        for source in sources:
            if source.labels is None:
                raise SettingError("data", source.path, "supervised pretraining needs labelled ImageFolder data")
            if source.classes != classes:
                raise SettingError("data", source.path, f"has other classes than {sources[0].path}")
        labels = np.concatenate([source.labels for source in sources])
    images = np.concatenate([source.images for source in sources]).astype(np.float32, copy=False)
    return PretrainData(images=images, labels=labels, classes=classes, sources=tuple(sources))


def read_source(path: Path, image_size: int, progress: bool = False) -> Source:
    """One data path in any format the data layer reads."""
    fmt = detect_format(path)
    if fmt == NATURAL_FORMAT:
        return _natural(path, image_size, progress)
    slices = _cardiac_slices(path, fmt, image_size, progress)
    images = slices.images
    if images.shape[1:] != (image_size, image_size):  # a cache prepared at another size
        if images.shape[1] < image_size:
            logger.warning(
                "%s: slices prepared at %d px, upsampled to image_size %d: they hold no more detail than at %d "
                "(cardioseg data cache --size %d makes a cache at that size)",
                path,
                images.shape[1],
                image_size,
                images.shape[1],
                image_size,
            )
        images = _resize(torch.from_numpy(images)[:, None], (image_size, image_size))[:, 0].numpy()
    return Source(str(path), fmt, images, None, (), len(slices.patients()))


def _cardiac_slices(path: Path, fmt: str, image_size: int, progress: bool) -> SliceSet:
    if fmt == "cache":
        from ..data.cache import load_cache

        slices = load_cache(path)
        split = slices.meta.get("split")
        return slices if split is None else slices.select_patients(split["train"])
    if fmt == "ssl4mis":
        from ..data.ssl4mis import read_ssl4mis

        records, percentiles = read_ssl4mis(path, split="train"), None  # SSL4MIS volumes come normalised
    elif fmt == "acdc":
        from ..data.acdc import read_acdc_cine

        records, percentiles = read_acdc_cine(path), (0.0, 99.0)
    else:
        records, percentiles = read_records(path, fmt), (0.0, 99.0)
    try:
        return to_slices(records, mode="ssl4mis", size=image_size, percentiles=percentiles, progress=progress)
    except ValueError as exc:  # no records
        raise DataError(path, f"no images to pretrain on ({exc})") from None


def _natural(path: Path, image_size: int, progress: bool) -> Source:
    from ..data.imagefolder import list_images, load_image

    classes, items = list_images(path)
    images = np.empty((len(items), image_size, image_size), dtype=np.float32)
    for index, (file, _) in enumerate(tqdm(items, desc=f"reading {path.name}", unit="image", disable=not progress)):
        images[index] = _square(load_image(file, grayscale=True)[0], image_size)
    labels = np.array([category for _, category in items], dtype=np.int64)
    return Source(str(path), NATURAL_FORMAT, images, labels, tuple(classes), None)


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """The shorter side resized to ``size``, then the centre ``size x size`` (torchvision's Resize +
    CenterCrop, the usual way to put photographs of any shape on one grid)."""
    height, width = image.shape
    if height == width == size:
        return image
    scale = size / min(height, width)
    shape = (max(size, round(height * scale)), max(size, round(width * scale)))
    resized = _resize(torch.from_numpy(np.ascontiguousarray(image))[None, None], shape)[0, 0].numpy()
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return resized[top : top + size, left : left + size]


def _resize(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear with antialiasing (a plain bilinear shrink aliases fine texture)."""
    return F.interpolate(images.float(), size=shape, mode="bilinear", antialias=True, align_corners=False)
