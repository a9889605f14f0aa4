"""Pretraining's pieces on their own: views, methods, data sources, the checkpoint schedule (no engine runs)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cardioseg.errors import DataError
from cardioseg.nets import build_unet
from cardioseg.settings import SettingError
from cardioseg.ssl import METHODS, build_method
from cardioseg.ssl.checkpoints import is_milestone
from cardioseg.ssl.data import load_pretrain_data, read_source
from cardioseg.ssl.views import ViewConfig, make_view

SMALL_HEADS = {
    "byol": {"projection_hidden": 64, "prediction_hidden": 64, "projection_dim": 32},
    "simclr": {"projection_dim": 32},
    "moco": {"projection_dim": 32, "queue_size": 64},
    "vicreg": {"projection_hidden": 64, "projection_dim": 64},
    "mim": {},
    "supervised": {},
}


def write_imagefolder(root, classes=("cat", "dog"), per_class=6, seed=0):
    """A tiny natural-image ImageFolder: RGB PNGs of several shapes (gradients, a disc, noise)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = (40, 48) if i % 2 else (48, 36)
            y, x = np.mgrid[:h, :w]
            disc = ((y - h / 2) ** 2 + (x - w / 2) ** 2 < (6 + 3 * c + i) ** 2) * 120
            rgb = np.stack([x * 4, y * 4, disc + 40 * c], axis=-1) + rng.integers(0, 30, (h, w, 3))
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def natural_dir(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("natural") / "images")


def test_views_are_never_constant_and_never_wrap(phantom_dir, natural_dir):
    """The paper's uint16 brightness overflow blanked about one image in ten; views here are float math,
    not clipped, so even a bright, low-contrast image pushed up by the largest brightness shift keeps
    its structure, and every view of real images keeps some variation."""
    cardiac = read_source(phantom_dir, 32).images[:64]
    natural = read_source(natural_dir, 32).images
    bright = 0.92 + 0.08 * torch.linspace(0, 1, 32).repeat(32, 1)
    images = torch.cat([torch.from_numpy(cardiac), torch.from_numpy(natural), bright[None]])[:, None]
    harsh = ViewConfig(p_intensity=1.0, brightness=0.5, contrast_range=(0.2, 2.0), p_blur=1.0, p_noise=0.0)
    for config in (ViewConfig(), harsh):
        generator = torch.Generator().manual_seed(0)
        for _ in range(5):
            views = make_view(images, config, generator)
            assert views.dtype == torch.float32 and views.shape == images.shape
            spread = views.flatten(1).std(dim=1)
            assert spread.min() > 1e-3, spread.min()
    generator = torch.Generator().manual_seed(1)
    lifted = make_view(bright[None, None], ViewConfig(p_intensity=1.0, brightness=0.5, crop_scale=(1, 1)), generator)
    assert lifted.max() > lifted.min()  # not clipped flat at 1.0


def test_blur_takes_the_same_share_of_detail_at_every_view_size():
    """blur_sigma is in pixels of a 224-pixel view: the largest blur leaves a 32-pixel grating of 8-pixel
    period as much contrast as the same grating drawn at 224 pixels (unscaled, it would keep under a third)."""
    blur_only = ViewConfig(
        crop_scale=(1, 1), crop_ratio=(1, 1), max_rotation_deg=0, p_flip=0, p_intensity=0, p_blur=1,
        blur_sigma=(2.0, 2.0), p_noise=0,
    )  # fmt: skip
    kept = {}
    for size in (32, 224):
        grating = (0.5 + 0.5 * torch.sin(torch.arange(size) * (8 * math.pi / size))).repeat(size, 1)[None, None]
        view = make_view(grating, blur_only, torch.Generator().manual_seed(0))
        kept[size] = float(view.std() / grating.std())
    assert kept[32] > 0.9
    assert abs(kept[32] - kept[224]) < 0.05, kept


def test_views_follow_the_seed_and_differ_from_each_other(phantom_dir):
    images = torch.from_numpy(read_source(phantom_dir, 32).images[:8])[:, None]
    first = [make_view(images, ViewConfig(), torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(first[0], first[1])  # same seed, same view (noise included)
    generator = torch.Generator().manual_seed(3)
    a, b = make_view(images, ViewConfig(), generator), make_view(images, ViewConfig(), generator)
    assert not torch.equal(a, b)


def test_view_settings_are_checked():
    with pytest.raises(SettingError, match="'augmentation' is 'hue'"):
        ViewConfig.from_settings({"hue": 0.1})
    with pytest.raises(SettingError, match="crop_scale"):
        ViewConfig.from_settings({"crop_scale": [0.0, 1.5]})
    assert ViewConfig.from_settings({"crop_scale": [0.5, 1.0]}).crop_scale == (0.5, 1.0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_step_trains_and_transfers_u_net_keys(name):
    """One step moves the weights; what a checkpoint holds is named as the U-Net names it."""
    torch.manual_seed(0)
    method = build_method(name, "resnet18", SMALL_HEADS[name], num_classes=3)
    views = [torch.rand(4, 1, 32, 32) for _ in range(method.views)]
    loss = method.training_loss(views, torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    before = {k: v.clone() for k, v in method.transferred_state().items()}
    loss.backward()
    torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1).step()
    method.after_step(1, 10)
    after = method.transferred_state()
    unet_keys = set(build_unet("resnet18").state_dict())
    assert set(after) <= unet_keys
    parts = {key.split(".")[0] for key in after}
    assert parts == ({"encoder", "decoder"} if method.scope == "unet" else {"encoder"})
    assert not torch.equal(before["encoder.conv1.weight"], after["encoder.conv1.weight"])
    if method.branch == "target":  # fine-tuning takes the momentum copy, which trails the online one
        online = method.backbone.conv1.weight
        assert torch.equal(after["encoder.conv1.weight"], method.backbone_momentum.conv1.weight)
        assert not torch.equal(after["encoder.conv1.weight"], online)


def test_byol_is_the_papers():
    byol = build_method("byol", "resnet50")
    assert byol.projection_head.layers[0].out_features == 4096 and byol.projection_head.layers[-1].out_features == 256
    assert byol.prediction_head.layers[0].out_features == 4096
    assert byol.momentum(1, 100) == pytest.approx(0.99) and byol.momentum(100, 100) == pytest.approx(1.0)
    assert 0.99 < byol.momentum(50, 100) < 1.0


def test_moco_queue_survives_a_state_dict_round_trip():
    moco = build_method("moco", "resnet18", SMALL_HEADS["moco"])
    other = build_method("moco", "resnet18", SMALL_HEADS["moco"])
    moco.criterion.memory_bank.bank_ptr.fill_(5)
    other.load_state_dict(moco.state_dict())
    assert torch.equal(other.criterion.memory_bank.bank, moco.criterion.memory_bank.bank)
    assert int(other.criterion.memory_bank.bank_ptr) == 5


def test_unknown_method_option_is_a_setting_error():
    with pytest.raises(SettingError, match="'method_options' is 'temperature': method 'byol' takes"):
        build_method("byol", "resnet18", {"temperature": 0.1})


def test_sources_mix_with_counts(phantom_dir, natural_dir, caplog):
    """Raw ACDC-layout cine (every frame), the same cohort's DICOM cine, and natural images, in one run."""
    caplog.set_level(logging.INFO, logger="cardioseg.ssl")
    data = load_pretrain_data([phantom_dir, phantom_dir / "dicom", natural_dir], 32)
    described = data.describe()
    assert [d["format"] for d in described] == ["acdc", "dicom", "imagefolder"]
    assert [d["images"] for d in described] == [3 * 12 * 8, 3 * 12 * 8, 12]  # patients x frames x slices
    assert described[0]["patients"] == 3 and described[2]["kind"] == "natural"
    assert data.images.shape == (len(data), 32, 32) and data.labels is None
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert "gives 288 images" in caplog.text and "gives 12 images" in caplog.text


def test_supervised_data_takes_class_folders(natural_dir, phantom_dir):
    data = load_pretrain_data([natural_dir], 32, labelled=True)
    assert data.classes == ("cat", "dog") and data.labels.tolist() == [0] * 6 + [1] * 6
    with pytest.raises(SettingError, match="supervised pretraining needs labelled ImageFolder data"):
        load_pretrain_data([natural_dir, phantom_dir], 32, labelled=True)


def test_ssl4mis_gives_train_patients_only(acdc_ssl4mis):
    from cardioseg.data.ssl4mis import read_split
    from cardioseg.ssl.data import _cardiac_slices

    slices = _cardiac_slices(acdc_ssl4mis, "ssl4mis", 32, progress=False)
    assert set(slices.patients()) == set(read_split(acdc_ssl4mis, "train"))
    assert not set(slices.patients()) & set(read_split(acdc_ssl4mis, "val"))


def test_unreadable_image_names_the_file(tmp_path):
    root = write_imagefolder(tmp_path / "images", per_class=2)
    (root / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"dog/1.png: not a readable image"):
        read_source(root, 32)


def test_checkpoint_epochs():
    assert [e for e in range(1, 500) if is_milestone(e)] == [*range(1, 11), *range(12, 25, 2), 25, 50, 100, 200, 400]


def test_sync_free_lars_steps_as_lightly_does():
    """The optimizer pretraining builds for "lars" replaces lightly's per-parameter host syncs with tensor
    arithmetic; its updates must stay lightly's, zero weights and zero gradients included."""
    from lightly.utils.lars import LARS

    from cardioseg.ssl.trainer import SyncFreeLARS

    def params():
        torch.manual_seed(0)
        weights = [torch.randn(8, 4), torch.zeros(4), torch.randn(3, 3), torch.randn(5)]
        return [w.clone().requires_grad_() for w in weights]

    mine, theirs = params(), params()
    groups = lambda ps: [{"params": ps[:3]}, {"params": ps[3:], "weight_decay": 0.0}]  # noqa: E731
    optimizers = [
        cls(groups(ps), lr=0.5, momentum=0.9, weight_decay=1e-3) for cls, ps in ((SyncFreeLARS, mine), (LARS, theirs))
    ]
    for step in range(4):
        grads = [torch.randn_like(p) for p in mine]
        grads[2] = torch.zeros_like(grads[2]) if step == 1 else grads[2]
        for optimizer, ps in zip(optimizers, (mine, theirs), strict=True):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.equal(mine[0], params()[0])  # it did move


def test_a_slice_cache_read_at_a_larger_size_is_upsampled_with_a_warning(phantom_dir, tmp_path, caplog):
    from cardioseg.data.cache import save_cache
    from cardioseg.data.formats import read_records
    from cardioseg.data.slicing import to_slices

    slices = to_slices(read_records(phantom_dir), mode="ssl4mis", size=32)
    cache = save_cache(slices, tmp_path / "slices32.npz", compression="none")
    with caplog.at_level("WARNING", logger="cardioseg.ssl"):
        assert read_source(cache, 32).images.shape[1:] == (32, 32)
        assert not caplog.records
        assert read_source(cache, 64).images.shape[1:] == (64, 64)
    assert "slices prepared at 32 px, upsampled to image_size 64" in caplog.text
