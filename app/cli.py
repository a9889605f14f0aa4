"""Command line of the app: the SDK's options, inputs checked before the graph runs, one line per error.

The options are the MONAI Deploy App SDK's (``-i/--input``, ``-o/--output``, ``-m/--model``,
``-w/--workdir``, ``-l/--log-level``), and ``--overwrite``; the folders fall back to its environment variable
(``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH``, ``HOLOSCAN_MODEL_PATH``, ``HOLOSCAN_WORKDIR``) and then
to the SDK's default, as ``AppContext`` resolves them. They are parsed here rather than by the SDK's parser,
which creates the output folder as it parses: a run refused for bad input must leave no output folder.

Before the graph is built: the input folder must exist and hold files, the output folder must be new or
empty (or ``--overwrite`` given) and writable, and the model bundle must pass its checks (every model file's
sha256 against ``large_files.yml``, the ONNX signature). Bad input there or in an operator (see
``app.operators.stage``) prints ``cardioseg: error: PATH: problem`` as the last line and exits 2, with
nothing written to the output folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from cardioseg.data.dicom_cine import files_under
from cardioseg.errors import CardiosegError, DataError

logger = logging.getLogger("app")

SETTINGS = {  # option -> (environment variable, SDK default)
    "input": ("HOLOSCAN_INPUT_PATH", "input"),
    "output": ("HOLOSCAN_OUTPUT_PATH", "output"),
    "model": ("HOLOSCAN_MODEL_PATH", "models"),
    "workdir": ("HOLOSCAN_WORKDIR", ""),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app",
        description="DICOM short-axis cine study -> DICOM SEG, NIfTI labels, clinical indices, report and picture",
    )
    parser.add_argument("-i", "--input", help="DICOM study folder (else $HOLOSCAN_INPUT_PATH, else ./input)")
    parser.add_argument("-o", "--output", help="new or empty output folder (else $HOLOSCAN_OUTPUT_PATH, else ./output)")
    parser.add_argument("-m", "--model", help="exported bundle folder (else $HOLOSCAN_MODEL_PATH, else ./models)")
    parser.add_argument("-w", "--workdir", help="work folder (unused; accepted as the SDK accepts it)")
    parser.add_argument(
        "-l", "--log-level", type=log_level, choices=["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"], help="log level"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace everything in a non-empty output folder by the results"
    )
    return parser


def log_level(text: str) -> str:
    """The SDK's level name: upper case, and WARN for Python's WARNING."""
    return {"WARNING": "WARN"}.get(text.upper(), text.upper())


def resolve(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """Each setting's value and where it came from (the option, the variable or the default)."""
    found = {}
    for key, (variable, default) in SETTINGS.items():
        if getattr(args, key):
            found[key] = (getattr(args, key), f"--{key}")
        elif os.environ.get(variable):
            found[key] = (os.environ[variable], variable)
        else:
            found[key] = (default, f"the default (no --{key}, no {variable})")
    return found


def check_input_folder(folder: Path, source: str) -> None:
    if not folder.exists():
        raise DataError(folder, f"input folder does not exist (from {source})")
    if not folder.is_dir():
        raise DataError(folder, f"input is not a folder (from {source}); pass the study's folder")
    if next(files_under(folder), None) is None:
        raise DataError(folder, "input folder is empty: no files to read")


def bundle_folder(path: Path) -> Path:
    """The exported bundle itself, or the one bundle inside a models folder: a MAP puts each model in a
    subfolder of ``HOLOSCAN_MODEL_PATH`` (``/opt/holoscan/models/cardiac_sax_seg``)."""
    if not path.is_dir() or (path / "large_files.yml").exists():
        return path
    inside = sorted(child for child in path.iterdir() if child.is_dir() and (child / "large_files.yml").is_file())
    if len(inside) > 1:
        names = ", ".join(child.name for child in inside)
        raise DataError(path, f"holds {len(inside)} exported bundles ({names}): pass the one to use with -m")
    return inside[0] if inside else path


def load_model(bundle: Path, source: str):
    """The bundle's ONNX model, checked (hashes, metadata, signature); CUDA where ONNX Runtime has it."""
    from cardioseg.clinical.model import load_bundle_model

    if not bundle.exists():
        raise DataError(bundle, f"model bundle folder does not exist (from {source}; pass -m BUNDLE_DIR)")
    return load_bundle_model(bundle_folder(bundle), backend="onnx", device="auto")


def quiet_holoscan() -> None:
    """Holoscan's own log at warnings and above, unless HOLOSCAN_LOG_LEVEL says otherwise."""
    if "HOLOSCAN_LOG_LEVEL" not in os.environ:
        from holoscan.logger import LogLevel, set_log_level

        set_log_level(LogLevel.WARN)


def run(
    input_dir: Path,
    output_dir: Path,
    bundle: Path,
    *,
    sources: dict[str, str] | None = None,
    workdir: str = "",
    overwrite: bool = False,
):
    """Check the inputs, build the app and run it once; returns its ``RunState`` (stage times, outputs).

    Raises the CardiosegError of the first bad input, found before or during the graph's run.
    """
    from cardioseg.clinical.outputs import check_output_folder

    sources = sources or {}
    start = time.perf_counter()
    check_input_folder(input_dir, sources.get("input", "--input"))
    check_output_folder(output_dir, overwrite)

    from monai.deploy.core import AppContext, RuntimeEnv

    from .app import CardiacCineSegApp
    from .operators import RunState

    state = RunState()
    loaded = time.perf_counter()
    model = load_model(bundle, sources.get("model", "--model"))
    state.timings["load_model"] = round(time.perf_counter() - loaded, 4)

    settings = {"input": str(input_dir), "output": str(output_dir), "model": str(model.bundle_dir), "workdir": workdir}
    context = AppContext(settings, RuntimeEnv())
    quiet_holoscan()
    app = CardiacCineSegApp(["app"], app_context=context, model=model, run_state=state, overwrite=overwrite)
    app.run()
    if state.error is not None:
        raise state.error
    if not state.outputs:  # the graph stopped without an error from an operator: a bug, not bad input
        raise RuntimeError("the application graph finished without writing its outputs")
    state.timings["total"] = round(time.perf_counter() - start, 4)
    return state


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from monai.deploy.core.arg_parser import set_up_logging

    set_up_logging(args.log_level)  # the SDK's logging setup (INFO by default)
    if args.log_level != "DEBUG":
        logging.getLogger("highdicom").setLevel(logging.WARNING)  # a line per copied DICOM module otherwise
    settings = resolve(args)
    paths = {key: Path(value).absolute() for key, (value, _) in settings.items() if key != "workdir"}
    try:
        state = run(
            paths["input"],
            paths["output"],
            paths["model"],
            sources={key: source for key, (_, source) in settings.items()},
            workdir=settings["workdir"][0],
            overwrite=args.overwrite,
        )
    except CardiosegError as exc:
        print(f"cardioseg: error: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(path.name for path in state.outputs.values())
    print(f"wrote {paths['output']}: {names} in {state.timings['total']:.1f} s")
    return 0
