"""The fine-tuning bundle's settings, checked together before the data is read or a file is written."""

from __future__ import annotations

from typing import Any

from ..data.slicing import MODES
from ..nets import DECODER_CHANNELS, ENCODERS, SIZE_DIVISOR, build_unet, is_weights_name, load_pretrained
from ..settings import (
    SettingError,
    as_flag,
    choice,
    existing_path,
    is_none,
    multiple_of,
    output_folder,
    real_number,
    whole_number,
)
from .cuda_graphs import cuda_graphs_mode
from .data import DATASET_FORMATS


def check_finetune_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Every setting of ``train.json``'s ``run_settings`` checked (cheap checks: nothing is read);
    returns them unchanged."""
    s = settings
    existing_path("dataset_dir", s["dataset_dir"])
    choice("dataset_format", s["dataset_format"], DATASET_FORMATS)
    choice("slice_mode", s["slice_mode"], MODES)
    image_size = multiple_of("image_size", s["image_size"], SIZE_DIVISOR)
    real_number("val_fraction", s["val_fraction"], 0.0, 1.0, open_low=True, open_high=True)
    choice("encoder", s["encoder"], ENCODERS)
    patients = whole_number("num_labelled_patients", s["num_labelled_patients"], minimum=1, optional=True)
    slices = whole_number("num_labelled_slices", s["num_labelled_slices"], minimum=1, optional=True)
    if patients is not None and slices is not None:
        raise SettingError("num_labelled_slices", slices, "give num_labelled_patients or num_labelled_slices, not both")
    whole_number("seed", s["seed"], minimum=0)
    epochs = whole_number("epochs", s["epochs"], minimum=1)
    batch_size = whole_number("batch_size", s["batch_size"], minimum=1)
    whole_number("epoch_length", s["epoch_length"], minimum=batch_size, optional=True)
    real_number("learning_rate", s["learning_rate"], 0.0, open_low=True)
    real_number("weight_decay", s["weight_decay"], 0.0)
    warmup = whole_number("warmup_epochs", s["warmup_epochs"], minimum=0)
    if warmup > epochs:
        raise SettingError("warmup_epochs", warmup, f"must not exceed epochs ({epochs})")
    if not is_none(s["ema_decay"]):
        real_number("ema_decay", s["ema_decay"], 0.0, 1.0, open_low=True, open_high=True)
    as_flag(s["freeze_encoder"], "freeze_encoder")
    levels = whole_number("deep_supervision", s["deep_supervision"], minimum=0)
    if levels > len(DECODER_CHANNELS) - 1:
        raise SettingError("deep_supervision", levels, f"must be between 0 and {len(DECODER_CHANNELS) - 1}")
    channels = s["decoder_channels"]
    if not is_none(channels):
        if not isinstance(channels, list | tuple) or len(channels) != len(DECODER_CHANNELS):
            wanted = f"give {len(DECODER_CHANNELS)} whole numbers, coarsest first"
            raise SettingError("decoder_channels", channels, wanted)
        for value in channels:
            whole_number("decoder_channels", value, minimum=1)
    augment = as_flag(s["augment"], "augment")
    if not is_none(s["crop_size"]):
        crop_size = multiple_of("crop_size", s["crop_size"], SIZE_DIVISOR)
        if crop_size > image_size:
            raise SettingError("crop_size", crop_size, f"must not exceed image_size ({image_size})")
        if not augment:
            raise SettingError("crop_size", crop_size, "random windows are part of augmentation: set augment true")
    real_number("checkpoint_seconds", s["checkpoint_seconds"], 0.0)
    if not is_none(s["stop_at_dice"]):
        real_number("stop_at_dice", s["stop_at_dice"], 0.0, 1.0, open_low=True)
    pretrained = s["pretrained"]
    if not is_none(pretrained) and not is_weights_name(pretrained):
        existing_path("pretrained", pretrained, kind="file")
    return settings


def check_crop_fits(crop_size: Any, slice_shape: tuple[int, ...]) -> None:
    """``crop_size`` against the data's slices, once read: a slice cache keeps the size it was made at,
    whatever ``image_size`` says, so the settings' check alone would let a too-large window fail at the
    first step, after the run folder was made."""
    if not is_none(crop_size) and int(crop_size) > min(slice_shape):
        size = "x".join(str(side) for side in slice_shape)
        raise SettingError("crop_size", crop_size, f"must not exceed the data's {size} slices")


def inspect_pretrained(encoder: str, pretrained: Any, decoder_channels: Any = None) -> dict[str, Any] | None:
    """Load ``pretrained`` into a bare U-Net as ``build_unet`` will (the encoder, and the decoder of a
    whole-U-Net checkpoint), so weights that do not fit fail before the run folder is made, and describe
    them (source, sha256, scope, checkpoint header) for the run's record."""
    if is_none(pretrained):
        return None
    return load_pretrained(build_unet(encoder, decoder_channels=decoder_channels), str(pretrained)).describe()


# torch.compile's (Inductor's) modes, and "cudagraphs" for its cudagraphs backend (``compile_kwargs``)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "cudagraphs")


def compile_kwargs(compile_mode: str) -> dict[str, str]:
    """``torch.compile``'s arguments for a ``compile_mode``: Inductor's modes, or "cudagraphs", CUDA graphs
    of the traced step without Inductor's code generation (no fused kernels, but seconds to compile rather
    than Inductor's tens, for short runs whose steps are bound by kernel launches)."""
    return {"backend": "cudagraphs"} if compile_mode == "cudagraphs" else {"mode": compile_mode}


def check_run_options(output_dir: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The options that steer a run but are not part of its record, parsed: flags (resume, overwrite,
    compile, deterministic), ``compile_mode``, the mode ``torch.compile`` is given, and ``cuda_graphs``
    (None, "network" or "step")."""
    output_folder("output_dir", output_dir)
    words = ("compile_mode", "cuda_graphs")
    parsed = {name: as_flag(value, name) for name, value in options.items() if name not in words}
    if "compile_mode" in options:
        parsed["compile_mode"] = choice("compile_mode", options["compile_mode"], COMPILE_MODES)
    if "cuda_graphs" in options:
        parsed["cuda_graphs"] = cuda_graphs_mode(options["cuda_graphs"])
    if parsed.get("compile") and parsed.get("cuda_graphs"):
        raise SettingError(
            "cuda_graphs",
            options["cuda_graphs"],
            "not with compile (its reduce-overhead and cudagraphs modes make CUDA graphs of their own)",
        )
    return parsed


def check_single_process_options(options: dict[str, Any]) -> None:
    """What ``multi_gpu_train.json`` cannot do: ``cuda_graphs`` (DistributedDataParallel's gradient
    all-reduce would need capturing too)."""
    if cuda_graphs_mode(options.get("cuda_graphs")):
        raise SettingError("cuda_graphs", options["cuda_graphs"], "not with multi_gpu_train.json (one process only)")
