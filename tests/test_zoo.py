"""The bundle as the MONAI model zoo checks it, with MONAI's own tools and no network.

What ``ci/verify_bundle.py`` of Project-MONAI/model-zoo does to a bundle (necessary and preferred files,
``large_files.yml`` hashes, ``verify_metadata`` against the official schema, ``verify_net_in_out``,
``ckpt_export`` with ``bundle_root``), the workflow property checks of its unit tests
(``ConfigWorkflow(...).check_properties()`` for train and inference) and its evaluation pattern
(``config_file=[train.json, evaluate.json]``), run on the source bundle and on an export of a small run.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from bundle_helpers import BUNDLE, CONFIGS, IMAGE_SIZE, frames, shared_export, shared_run, val_patients
from monai.apps.utils import HashCheckError
from monai.bundle import (
    ConfigParser,
    ConfigWorkflow,
    ckpt_export,
    download_large_files,
    load,
    run,
    verify_metadata,
    verify_net_in_out,
)

from cardioseg.bundle import BUNDLE_NAME, check_large_files
from cardioseg.checkpoint import file_sha256, save_torch_atomic
from cardioseg.errors import DataError
from cardioseg.nets import build_unet

OFFICIAL_SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)
# sha256 of the official file, shipped unmodified (Project-MONAI/project-monai.github.io, public/schema/,
# "copied verbatim from the MONAI-extra-test-data 0.8.1 release").
OFFICIAL_SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"
SCHEMA = BUNDLE / "schema" / "meta_schema_20240725.json"

pytestmark = [
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),  # MONAI's note on trusted configs
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning"),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, phantom_dir) -> Path:
    return shared_run(tmp_path_factory, phantom_dir)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, phantom_dir) -> Path:
    return shared_export(tmp_path_factory, phantom_dir)


@pytest.fixture
def bundle_copy(exported, tmp_path) -> Path:
    """A copy of the export this test may change, named as the bundle (``monai.bundle.load`` finds it by name)."""
    return Path(shutil.copytree(exported, tmp_path / "zoo" / BUNDLE_NAME))


# --- metadata ------------------------------------------------------------------------------------


def test_the_schema_is_the_official_file():
    assert file_sha256(SCHEMA) == OFFICIAL_SCHEMA_SHA256
    assert json.loads(SCHEMA.read_text())["$schema"] == "https://json-schema.org/draft/2019-09/schema"


@pytest.mark.parametrize("where", ["source", "export"])
def test_metadata_passes_the_official_schema_without_warnings(where, request, tmp_path):
    bundle = BUNDLE if where == "source" else request.getfixturevalue("exported")
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    assert meta["schema"] == OFFICIAL_SCHEMA_URL and "required_packages_version" in meta
    assert "optional_packages_version" not in meta
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Detected deprecated name 'optional_packages_version'" would fail
        ConfigParser().read_meta(str(meta_file))
        # hash_val: the shipped file is checked against the official sha256 before it is used; no download
        verify_metadata(
            meta_file=str(meta_file),
            filepath=str(bundle / "schema" / SCHEMA.name),
            hash_val=OFFICIAL_SCHEMA_SHA256,
            hash_type="sha256",
        )

    del meta["required_packages_version"]  # the key the official schema added
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="required_packages_version"):
        verify_metadata(
            meta_file=str(broken), filepath=str(SCHEMA), hash_val=OFFICIAL_SCHEMA_SHA256, hash_type="sha256"
        )


@pytest.mark.parametrize("where", ["source", "export"])
def test_json_is_pretty_formatted(where, request):
    bundle = BUNDLE if where == "source" else request.getfixturevalue("exported")
    files = sorted((bundle / "configs").glob("*.json"))
    assert {f.name for f in files} >= {
        "metadata.json",
        "train.json",
        "multi_gpu_train.json",
        "evaluate.json",
        "inference.json",
    }
    for path in files:
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=4, ensure_ascii=False) + "\n", path


def test_multi_gpu_config_has_the_zoo_name():
    assert (CONFIGS / "multi_gpu_train.json").is_file() and not (CONFIGS / "train_multigpu.json").exists()
    merged = ConfigParser()
    merged.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    # rank 0 keeps the TensorBoard handler (last in train#handlers); the others drop it
    assert merged["train#trainer#train_handlers"].startswith("$")
    assert merged["train#handlers"][-1]["_target_"] == "TensorBoardStatsHandler"


# --- workflow properties -------------------------------------------------------------------------


def test_train_workflow_has_the_zoo_properties(phantom_dir, tmp_path):
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "train.json"),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(tmp_path / "bundle"),
        dataset_dir=str(phantom_dir),
        dataset_format="phantom",
        encoder="resnet18",
        image_size=IMAGE_SIZE,
        epochs=1,
        batch_size=8,
        epoch_length=8,
        progress=False,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.max_epochs == 1 and workflow.val_interval == 1
    assert len(workflow.train_dataset) > 0 and workflow.val_dataset is not None
    assert workflow.train_inferer is not None and workflow.evaluator is not None
    # training writes where inference reads: <bundle_root>/models
    assert Path(workflow.parser.get_parsed_content("ckpt_dir")) == tmp_path / "bundle" / "models"


def test_inference_workflow_has_the_zoo_properties_and_runs(exported, trained_run, phantom_dir, tmp_path):
    patient = val_patients(trained_run)[0]
    workflow = ConfigWorkflow(
        config_file=str(exported / "configs" / "inference.json"),
        logging_file=False,
        workflow_type="infer",
        bundle_root=str(exported),
        dataset_dir=str(phantom_dir / patient),
        output_dir=str(tmp_path / "seg"),
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert isinstance(workflow.network_def, torch.jit.ScriptModule)
    workflow.run()
    workflow.finalize()
    written = sorted(p.name for p in (tmp_path / "seg").iterdir())
    assert written == [p.name.replace(".nii.gz", "_seg.nii.gz") for p in frames(phantom_dir / patient)]


# --- ci/verify_bundle.py -------------------------------------------------------------------------


def test_the_zoo_verification_passes_on_an_export(bundle_copy, tmp_path, monkeypatch):
    """ci/verify_bundle.py's steps, from another working directory, as the zoo CI runs them."""
    monkeypatch.chdir(tmp_path)
    root = str(bundle_copy)
    for necessary in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json"):
        assert (bundle_copy / necessary).is_file(), necessary
    # Files present: only their sha256 is checked (the zoo's ci/utils.py does the same; MONAI's own
    # download_large_files fails with large_file_name given, so it is left to find the file)
    download_large_files(bundle_path=root)
    verify_metadata(
        meta_file=f"{root}/configs/metadata.json",
        filepath=f"{root}/schema/{SCHEMA.name}",
        hash_val=OFFICIAL_SCHEMA_SHA256,
        hash_type="sha256",
    )
    verify_net_in_out(
        net_id="network_def",
        meta_file=f"{root}/configs/metadata.json",
        config_file=f"{root}/configs/inference.json",
        bundle_root=root,
    )
    ckpt_export(
        net_id="network_def",
        filepath=f"{root}/models/verify_model.ts",
        ckpt_file=f"{root}/models/model.pt",
        meta_file=f"{root}/configs/metadata.json",
        config_file=f"{root}/configs/inference.json",
        bundle_root=root,
    )
    shipped = torch.jit.load(f"{root}/models/model.ts")
    verified = torch.jit.load(f"{root}/models/verify_model.ts")
    images = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(verified(images), shipped(images))


def test_large_files_list_each_model_file_with_its_sha256(bundle_copy):
    listed = check_large_files(bundle_copy)
    assert sorted(listed) == ["models/model.onnx", "models/model.pt", "models/model.ts"]
    for path, sha256 in listed.items():
        assert sha256 == file_sha256(bundle_copy / path)

    other = build_unet("resnet34").state_dict()  # same file name, another network
    save_torch_atomic(other, bundle_copy / "models" / "model.pt")
    with pytest.raises(DataError) as info:
        check_large_files(bundle_copy)
    assert info.value.path == bundle_copy / "models" / "model.pt"
    with pytest.raises(HashCheckError, match="model.pt"):  # MONAI's own check says the same
        download_large_files(bundle_path=str(bundle_copy))


# --- paths: every working directory, no silent wrong model ---------------------------------------


def test_zoo_evaluation_pattern_train_plus_evaluate(bundle_copy, phantom_dir):
    workflow = ConfigWorkflow(
        config_file=[str(bundle_copy / "configs" / "train.json"), str(bundle_copy / "configs" / "evaluate.json")],
        logging_file=False,
        bundle_root=str(bundle_copy),
        dataset_dir=str(phantom_dir),
        progress=False,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    result = json.loads((bundle_copy / "eval" / "evaluation.json").read_text())
    recorded = json.loads((bundle_copy / "data.json").read_text())
    assert result["patients"] == sorted(recorded["split"]["val"]) and result["image_size"] == IMAGE_SIZE


def test_evaluate_inside_an_export_needs_no_run_dir(bundle_copy, phantom_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(
        config_file=str(bundle_copy / "configs" / "evaluate.json"),
        logging_file=False,
        bundle_root=str(bundle_copy),
        dataset_dir=str(phantom_dir),
        progress=False,
    )
    assert (bundle_copy / "eval" / "evaluation.json").is_file()


def _weights_match(network: torch.nn.Module, checkpoint: Path) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    loaded = network.state_dict()
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, msg=key)


def test_monai_load_never_builds_a_different_network(bundle_copy, tmp_path, monkeypatch):
    parent = bundle_copy.parent
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    # From another working directory the config's bundle_root ('.') has no model: an error naming the
    # TorchScript file it looked for, not a default network with some of the weights.
    monkeypatch.chdir(outside)
    with pytest.raises(Exception) as info:
        load(BUNDLE_NAME, bundle_dir=str(parent), workflow_type="inference", device="cpu", progress=False)
    assert "models/model.ts" in _chain(info.value)
    # The TorchScript module loads from anywhere (monai.bundle.load finds it by bundle_dir)
    scripted, meta, _ = load(BUNDLE_NAME, bundle_dir=str(parent), load_ts_module=True, device="cpu", progress=False)
    assert meta["version"] == json.loads((bundle_copy / "configs" / "metadata.json").read_text())["version"]

    # In the bundle (MONAI's convention: bundle_root is the working directory) every tensor is loaded
    monkeypatch.chdir(bundle_copy)
    network = load(BUNDLE_NAME, bundle_dir=str(parent), workflow_type="inference", device="cpu", progress=False)
    _weights_match(network, bundle_copy / "models" / "model.pt")
    images = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(network(images), scripted(images))

    # Weights of another depth dropped into the bundle: refused by the sha256 check, naming the file
    save_torch_atomic(build_unet("resnet34").state_dict(), bundle_copy / "models" / "model.pt")
    with pytest.raises(Exception) as info:
        load(BUNDLE_NAME, bundle_dir=str(parent), workflow_type="inference", device="cpu", progress=False)
    assert "model.pt" in _chain(info.value) and "hash check" in _chain(info.value)


def test_ckpt_export_from_another_working_directory(bundle_copy, tmp_path, monkeypatch):
    """The zoo passes bundle_root; ckpt_export then finds every file whatever the working directory."""
    monkeypatch.chdir(tmp_path)
    ckpt_export(
        net_id="network_def",
        config_file=str(bundle_copy / "configs" / "inference.json"),
        bundle_root=str(bundle_copy),
        filepath=str(tmp_path / "again.ts"),
    )
    again = torch.jit.load(str(tmp_path / "again.ts"))
    _weights_match(again, bundle_copy / "models" / "model.pt")

    # ckpt_export loads strictly: weights of another depth are an error, not a partly loaded network
    save_torch_atomic(build_unet("resnet34").state_dict(), bundle_copy / "models" / "model.pt")
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key|size mismatch"):
        ckpt_export(
            net_id="network_def",
            config_file=str(bundle_copy / "configs" / "inference.json"),
            bundle_root=str(bundle_copy),
            filepath=str(tmp_path / "wrong.ts"),
        )


def _chain(exc: BaseException | None) -> str:
    """Every message in an exception's cause chain (MONAI wraps config errors in its own)."""
    messages = []
    while exc is not None:
        messages.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(messages)
