"""A study's settings checked and laid out as runs: which pretrainings, which fine-tunings, in which folders.

A study (``experiments/configs/*.json``) names pretraining runs (a recipe of ``pretraining/configs`` with
overrides, ``pretraining_defaults`` for those all runs share, optionally started from another of the
study's pretrainings: the hierarchical chain), strategies (where fine-tuning starts: random, a weights
file or name, or one of the study's pretrainings at its end or at a milestone epoch), label budgets
(labelled training patients; ``null`` for all) and seeds, plus the fine-tuning settings every run shares.
Every setting, the recipes' and the bundle's included, is checked here before any run starts, so a typo
fails in a second rather than after hours of pretraining.
The folder layout:

    OUT/pretraining/NAME/                       a recipe's run folder (models/final.pt, epoch_NNNN.pt ...)
    OUT/finetune/STRATEGY/N_patients/seedK/     a bundle run folder (metrics.jsonl: one line per epoch)
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..bundle import TRAIN_CONFIG, merged_config
from ..settings import SettingError, is_none, real_number, whole_number
from ..shipped import named_config
from ..ssl.checkpoints import checkpoint_name, is_milestone
from ..ssl.recipes import recipe_path
from ..ssl.settings import check_pretrain_settings
from ..training.settings import check_finetune_settings
from .packing import BundleRun

logger = logging.getLogger("cardioseg.study")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
STUDIES = ("paper", "small", "demo")  # experiments/configs: the paper's study, and overlays that scale it down
# What the study sets on each fine-tuning run itself: the grid's coordinates and the run's folder.
SET_BY_STUDY = (
    "output_dir",
    "pretrained",
    "num_labelled_patients",
    "num_labelled_slices",
    "seed",
    "resume",
    "overwrite",
)
# Per-strategy keys that are the study's, not the bundle's.
STRATEGY_KEYS = ("pretraining", "epoch")


@dataclass(frozen=True)
class PretrainingRun:
    """One recipe run; ``init`` names the study's pretraining it starts from (its ``final.pt``), if any;
    ``epochs`` is how long it trains (which milestone checkpoints a strategy may take), ``encoder`` what
    it trains (what fine-tuning from it must build)."""

    name: str
    recipe: Path
    overrides: dict
    init: str | None
    epochs: int
    encoder: str
    folder: Path

    def bundle_run(self, pretraining: dict[str, PretrainingRun]) -> BundleRun:
        overrides = dict(self.overrides, progress=False)
        if self.init is not None:
            overrides["init"] = str(pretraining[self.init].checkpoint(None))
        return BundleRun(self.folder, overrides, config_file=self.recipe, run_id="pretraining")

    def checkpoint(self, epoch: int | None) -> Path:
        return self.folder / "models" / checkpoint_name(epoch)

    def finished(self) -> bool:
        return self.checkpoint(None).is_file()


@dataclass(frozen=True)
class FinetuneRun:
    """One bundle run of the grid: a strategy, a label budget (patients; None for all) and a seed."""

    strategy: str
    budget: int | None
    seed: int
    settings: dict
    folder: Path

    def bundle_run(self) -> BundleRun:
        return BundleRun(self.folder, dict(self.settings, progress=False))


@dataclass(frozen=True)
class Strategy:
    """Where fine-tuning starts: ``pretrained`` (None, a weights file or name) or the study's pretraining
    ``pretraining`` (at ``epoch``, or its end), with bundle ``overrides`` of its own (``freeze_encoder``)."""

    name: str
    pretrained: str | None
    pretraining: str | None
    epoch: int | None
    overrides: dict


@dataclass(frozen=True)
class StudyPlan:
    pretraining: dict[str, PretrainingRun]
    strategies: dict[str, Strategy]
    budgets: list[int | None]
    seeds: list[int]
    finetune: list[FinetuneRun]
    reference: str | None
    convergence_fraction: float
    convergence_floor: float

    def stages(self) -> list[list[PretrainingRun]]:
        """The pretraining runs in the order they can run: each stage's runs start from earlier stages'."""
        done: set[str] = set()
        stages = []
        while len(done) < len(self.pretraining):
            stage = [r for r in self.pretraining.values() if r.name not in done and (r.init is None or r.init in done)]
            stages.append(stage)
            done |= {r.name for r in stage}
        return stages


def study_config(name: str) -> Path:
    """A study config by name, or a path to one."""
    return named_config("config", name, "experiments/configs", STUDIES)


def check_study_configs(paths: list[Path], overrides: dict[str, Any]) -> None:
    """The config files and command-line overrides of a study, before MONAI reads them: each file a JSON
    object, each key one the study knows (``paper.json``'s, or one the configs refer to as ``@key``), each
    override one of a key the configs have. MONAI would take an unknown key as a new one that nothing
    reads: ``--epochs 20`` would run the study with its own epochs, silently."""
    merged = merged_config(paths)
    known = set(json.loads(study_config("paper").read_text())) | set(re.findall(r"@(\w+)", json.dumps(merged)))
    for key in merged:
        if key not in known:
            raise SettingError(key, merged[key], f"not a setting of the study ({_hint(key)})")
    for name, value in overrides.items():
        if name.split("#")[0] not in merged:
            raise SettingError(name, value, f"not a setting of the study ({_hint(name)})")


def _hint(key: str) -> str:
    top = key.split("#")[0]
    if top in _train_config():
        return f"a fine-tuning setting is finetune#{top}"
    return "see experiments/README.md for the settings"


def budget_label(budget: int | None) -> str:
    return "all_patients" if budget is None else f"{budget}_patients"


def plan_study(settings: dict[str, Any], output_dir: Path) -> StudyPlan:
    """The checked plan of a study's ``settings`` (see the module docstring) into ``output_dir``."""
    root = Path(output_dir)
    shared = _mapping("pretraining_defaults", settings.get("pretraining_defaults") or {}, allow_empty=True)
    for key in ("recipe", "init"):
        if key in shared:
            raise SettingError(f"pretraining_defaults#{key}", shared[key], "give it for each pretraining run")
    specs = _mapping("pretraining", settings.get("pretraining") or {}, allow_empty=True)
    pretraining = _pretraining_runs(
        {name: shared | spec if isinstance(spec, dict) else spec for name, spec in specs.items()}, root
    )
    strategies = _strategies(_mapping("strategies", settings.get("strategies")), pretraining)
    pretraining = _used(pretraining, strategies)
    budgets = _unique_list("label_budgets", settings.get("label_budgets"), _budget)
    seeds = _unique_list("seeds", settings.get("seeds"), lambda name, v: whole_number(name, v, minimum=0))
    base = _bundle_overrides("finetune", _mapping("finetune", settings.get("finetune") or {}, allow_empty=True))
    if is_none(base.get("dataset_dir")):
        raise SettingError("finetune#dataset_dir", None, "name the data every run fine-tunes on")
    runs = []
    for name, strategy in strategies.items():
        for budget in budgets:
            for seed in seeds:
                run_settings = base | strategy.overrides | {"num_labelled_patients": budget, "seed": seed}
                run_settings["pretrained"] = _start(strategy, pretraining)
                folder = root / "finetune" / name / budget_label(budget) / f"seed{seed}"
                runs.append(FinetuneRun(name, budget, seed, run_settings, folder))
    _check_finetune(runs, strategies, pretraining)
    reference = settings.get("reference")
    if not is_none(reference) and reference not in strategies:
        raise SettingError("reference", reference, f"name one of the strategies ({', '.join(strategies)}) or null")
    fraction = real_number("convergence_fraction", settings.get("convergence_fraction", 0.95), 0.0, 1.0, open_low=True)
    floor = real_number("convergence_floor", settings.get("convergence_floor", 0.5), 0.0, 1.0)
    reference = None if is_none(reference) else reference
    return StudyPlan(pretraining, strategies, budgets, seeds, runs, reference, fraction, floor)


def _mapping(name: str, value: Any, allow_empty: bool = False) -> dict:
    if not isinstance(value, dict) or (not value and not allow_empty):
        raise SettingError(
            name, value, "expected a mapping of names to settings" + ("" if allow_empty else ", not empty")
        )
    for key in value:
        if not isinstance(key, str) or not NAME.fullmatch(key):
            raise SettingError(name, key, "names are folder names: letters, digits, '_', '-', '.'")
    return value


def _unique_list(name: str, value: Any, parse) -> list:
    if not isinstance(value, list | tuple) or not value:
        raise SettingError(name, value, "expected a non-empty list")
    items = [parse(name, item) for item in value]
    if len(set(items)) != len(items):
        raise SettingError(name, value, "lists a value twice")
    return items


def _budget(name: str, value: Any) -> int | None:
    if is_none(value) or value == "all":
        return None
    return whole_number(name, value, minimum=1)


def _recipe_defaults(recipe: Path) -> dict:
    config = json.loads(recipe.read_text())
    return {key: config[key] for key in config["settings"]} | {"output_dir": config["output_dir"]}


def _pretraining_runs(specs: dict, root: Path) -> dict[str, PretrainingRun]:
    runs = {}
    for name, spec in specs.items():
        where = f"pretraining#{name}"
        if not isinstance(spec, dict) or "recipe" not in spec:
            raise SettingError(where, spec, "give a 'recipe' (generalist, specialist, hierarchical or a .json)")
        overrides = {k: v for k, v in spec.items() if k != "recipe"}
        try:
            recipe = recipe_path(spec["recipe"])
        except SettingError as exc:
            raise exc.within(where) from None
        defaults = _recipe_defaults(recipe)
        unknown = sorted(set(overrides) - set(defaults) - {"output_dir"})
        if unknown or "output_dir" in overrides:
            wrong = unknown[0] if unknown else "output_dir"
            raise SettingError(f"{where}#{wrong}", overrides[wrong], f"not a setting the study may give {recipe.name}")
        init = overrides.pop("init", defaults.get("init"))
        study_init = init if isinstance(init, str) and init in specs else None
        if study_init is None:
            if "init" not in spec and not is_none(init):  # hierarchical's default is a path in another layout
                raise SettingError(
                    f"{where}#init",
                    None,
                    "give the name of the study's pretraining it starts from, a weights file or none",
                )
            overrides["init"] = init
        try:
            checked = check_pretrain_settings(defaults | overrides | ({"init": "none"} if study_init else {}))
        except SettingError as exc:
            raise exc.within(where) from None
        folder = root / "pretraining" / name
        runs[name] = PretrainingRun(name, recipe, overrides, study_init, checked["epochs"], checked["encoder"], folder)
    for run in runs.values():  # a chain must end: no pretraining may start from itself, however indirectly
        seen, current = {run.name}, run.init
        while current is not None:
            if current in seen:
                raise SettingError(f"pretraining#{run.name}#init", run.init, "the chain of init returns to itself")
            seen.add(current)
            current = runs[current].init
    return runs


def _used(pretraining: dict[str, PretrainingRun], strategies: dict[str, Strategy]) -> dict[str, PretrainingRun]:
    """The pretrainings some strategy starts from, directly or through the chain of ``init``: hours of
    pretraining nothing fine-tunes from are not run."""
    used: set[str] = set()
    for strategy in strategies.values():
        name = strategy.pretraining
        while name is not None and name not in used:
            used.add(name)
            name = pretraining[name].init
    for name in sorted(pretraining.keys() - used):
        logger.warning("pretraining '%s' is not run: no strategy starts from it", name)
    return {name: run for name, run in pretraining.items() if name in used}


def _strategies(specs: dict, pretraining: dict[str, PretrainingRun]) -> dict[str, Strategy]:
    strategies = {}
    for name, spec in specs.items():
        where = f"strategies#{name}"
        if not isinstance(spec, dict):
            raise SettingError(where, spec, "expected {'pretrained': FILE_OR_NAME_OR_null} or {'pretraining': NAME}")
        source = spec.get("pretraining")
        if source is not None and "pretrained" in spec:
            raise SettingError(where, spec, "give 'pretrained' or 'pretraining', not both")
        if source is not None and source not in pretraining:
            raise SettingError(
                f"{where}#pretraining",
                source,
                f"name one of the study's pretrainings ({', '.join(pretraining) or 'none'})",
            )
        epoch = spec.get("epoch")
        if epoch is not None:
            if source is None:
                raise SettingError(f"{where}#epoch", epoch, "an epoch picks a checkpoint of a 'pretraining'")
            epoch = whole_number(f"{where}#epoch", epoch, minimum=1)
            planned = pretraining[source].epochs
            if epoch >= planned:
                raise SettingError(
                    f"{where}#epoch", epoch, f"'{source}' trains {planned} epochs: give fewer, or null for its end"
                )
            if not is_milestone(epoch):
                raise SettingError(
                    f"{where}#epoch", epoch, "pretraining keeps epochs 1-10, every second to 24, then 25, 50, 100, ..."
                )
        overrides = _bundle_overrides(where, {k: v for k, v in spec.items() if k not in (*STRATEGY_KEYS, "pretrained")})
        pretrained = None if is_none(spec.get("pretrained")) else str(spec["pretrained"])
        strategies[name] = Strategy(name, pretrained, source, epoch, overrides)
    return strategies


def _start(strategy: Strategy, pretraining: dict[str, PretrainingRun]) -> str | None:
    if strategy.pretraining is None:
        return strategy.pretrained
    return str(pretraining[strategy.pretraining].checkpoint(strategy.epoch))


@cache
def _train_config() -> dict:
    return json.loads(TRAIN_CONFIG.read_text())


def _bundle_overrides(where: str, overrides: dict) -> dict:
    """Bundle settings given in ``where`` (``finetune``, a strategy): train.json's, and not the study's own."""
    for key, value in overrides.items():
        if key in SET_BY_STUDY:
            raise SettingError(f"{where}#{key}", value, "the study sets this for each run")
        if key not in _train_config():
            raise SettingError(f"{where}#{key}", value, f"not a setting of {TRAIN_CONFIG.name}")
    return dict(overrides)


def _check_finetune(
    runs: list[FinetuneRun], strategies: dict[str, Strategy], pretraining: dict[str, PretrainingRun]
) -> None:
    """Each strategy's run settings checked as the bundle will (one run per strategy: the others differ only
    in budget and seed); a checkpoint the study has yet to write is not looked for, but what it will hold
    must be the network the runs build, and every run must validate at least once (what the study reads)."""
    for name, strategy in strategies.items():
        run = next(r for r in runs if r.strategy == name)
        settings = finetune_settings(run)
        if strategy.pretraining is not None:
            settings["pretrained"] = None
        try:
            checked = check_finetune_settings(settings)
        except SettingError as exc:
            raise exc.within(_where(strategy, exc.name)) from None
        interval = run.settings.get("val_interval", _train_config()["val_interval"])
        epochs = int(checked["epochs"])
        if whole_number(f"{_where(strategy, 'val_interval')}#val_interval", interval, minimum=1) > epochs:
            raise SettingError(
                f"{_where(strategy, 'val_interval')}#val_interval",
                interval,
                f"must not exceed epochs ({epochs}): no run would validate",
            )
        source = pretraining.get(strategy.pretraining)
        if source is not None and source.encoder != checked["encoder"]:
            raise SettingError(
                f"{_where(strategy, 'encoder')}#encoder",
                checked["encoder"],
                f"strategy '{name}' starts from pretraining '{source.name}', a {source.encoder}",
            )


def _where(strategy: Strategy, key: str) -> str:
    """Where a fine-tuning setting was given: the strategy's own overrides (and its start), or ``finetune``."""
    return f"strategies#{strategy.name}" if key in strategy.overrides or key == "pretrained" else "finetune"


def finetune_settings(run: FinetuneRun) -> dict[str, Any]:
    """The run's bundle settings: the study's over train.json's defaults."""
    defaults = {key: _train_config()[key] for key in _train_config()["run_settings"]}
    return defaults | {k: v for k, v in run.settings.items() if k in defaults}


def check_data(plan: StudyPlan) -> None:
    """The fine-tuning data read once, as the runs will read it, before any run starts: a wrong format, an
    empty folder or a label budget above the split's training patients would otherwise fail every run of
    the grid, after the pretraining."""
    from ..training.data import prepare_finetune_data

    keys = ("dataset_dir", "dataset_format", "image_size", "val_fraction", "slice_mode")
    checked = set()
    for run in plan.finetune:
        settings = finetune_settings(run)
        data = tuple(str(settings[key]) for key in keys)
        if data in checked:
            continue
        checked.add(data)
        try:
            prepared = prepare_finetune_data(**{key: settings[key] for key in keys}, seed=run.seed)
        except SettingError as exc:
            raise exc.within("finetune") from None
        patients = len(prepared.train.patients())
        for budget in plan.budgets:
            if budget is not None and budget > patients:
                raise SettingError(
                    "label_budgets",
                    budget,
                    f"must not exceed the {patients} training patients of {settings['dataset_dir']}",
                )
