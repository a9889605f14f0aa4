"""A study's findings for people: three figures, a Markdown report and a CSV of every run.

``convergence.png``: validation Dice against fine-tuning epoch, a panel per label budget, each strategy's
mean over seeds with the seeds' range, and the budget's convergence target as a dashed line.
``data_efficiency.png``: best validation Dice against labelled patients (log scale), mean and standard
deviation over seeds. ``epochs_to_target.png``: the paper's convergence-speed comparison as bars.
``report.md`` holds the tables behind them and what was run; ``results.csv`` one row per run, for a
spreadsheet or pandas.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..atomic import write_text_atomic
from ..visualize import plt, save_figure
from .plan import Strategy, StudyPlan, budget_label

FIGURES = ("convergence.png", "data_efficiency.png", "epochs_to_target.png")
DICE_LABEL = "mean validation Dice (RV, MYO, LV)"


def _colours(plan: StudyPlan) -> dict[str, str]:
    return {strategy: f"C{i}" for i, strategy in enumerate(plan.strategies)}


def _budget_title(budget: int | None, patients: dict[str, int]) -> str:
    label = budget_label(budget)
    count = patients.get(label)
    if budget is None:
        return f"all labelled patients ({count})" if count else "all labelled patients"
    return f"{budget} labelled patient{'s' if budget > 1 else ''}"


def convergence_figure(plan: StudyPlan, results: dict, patients: dict[str, int], path: Path) -> Path:
    columns = min(len(plan.budgets), 3)
    rows = -(-len(plan.budgets) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False, sharey=True)
    colours = _colours(plan)
    for ax, budget in zip(axes.ravel(), plan.budgets):
        for strategy in plan.strategies:
            by_epoch: dict[int, list[float]] = {}
            for seed in plan.seeds:
                for epoch, dice in results["curves"][f"{strategy}/{budget_label(budget)}/seed{seed}"]:
                    by_epoch.setdefault(epoch, []).append(dice)
            epochs = sorted(by_epoch)
            values = [np.array(by_epoch[e]) for e in epochs]
            marker = "." if len(epochs) <= 30 else None
            ax.plot(epochs, [v.mean() for v in values], color=colours[strategy], marker=marker, label=strategy)
            if len(plan.seeds) > 1:
                lows, highs = [v.min() for v in values], [v.max() for v in values]
                ax.fill_between(epochs, lows, highs, color=colours[strategy], alpha=0.15)
        target = results["targets"][budget_label(budget)]
        if target is None:
            ax.text(0.5, 0.95, "no strategy learned: not measured", transform=ax.transAxes, ha="center", va="top")
        else:
            ax.axhline(target, color="grey", linestyle="--", linewidth=1)
        ax.set(title=_budget_title(budget, patients), xlabel="fine-tuning epoch", ylim=(0, 1))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(plan.budgets) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(DICE_LABEL)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, fontsize="small")
    spread = f"mean of {len(plan.seeds)} seeds and their range; " if len(plan.seeds) > 1 else ""
    fig.suptitle(f"Convergence: {spread}dashed, {plan.convergence_fraction:.0%} of the budget's best", fontsize=10)
    legend_rows = -(-len(labels) // 4)
    fig.tight_layout(rect=(0, 0.04 + 0.05 * legend_rows / rows, 1, 1))
    return save_figure(fig, path)


def data_efficiency_figure(plan: StudyPlan, results: dict, patients: dict[str, int], path: Path) -> Path:
    cells = {(c["strategy"], c["label_budget"]): c for c in results["cells"]}
    xs = [patients.get(budget_label(b), b) for b in plan.budgets]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for strategy, colour in _colours(plan).items():
        mine = [cells[(strategy, budget_label(b))] for b in plan.budgets]
        ax.errorbar(
            xs,
            [c["best_val_dice"] for c in mine],
            yerr=[c["best_val_dice_sd"] or 0.0 for c in mine],
            color=colour,
            marker="o",
            capsize=3,
            label=strategy,
        )
    ax.set_xscale("log")
    ax.set_xticks([x for x in xs if x is not None], [str(x) for x in xs if x is not None])
    ax.minorticks_off()
    ax.set(xlabel="labelled training patients", ylabel=f"best {DICE_LABEL}", ylim=(0, 1))
    spread = f"mean and standard deviation over {len(plan.seeds)} seeds" if len(plan.seeds) > 1 else "one seed"
    ax.set_title(f"Data efficiency: {spread}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def epochs_to_target_figure(plan: StudyPlan, results: dict, patients: dict[str, int], path: Path) -> Path:
    cells = {(c["strategy"], c["label_budget"]): c for c in results["cells"]}
    width = 0.8 / len(plan.strategies)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(plan.budgets) * len(plan.strategies) / 2), 4.2))
    top = max([c["epochs_to_target"] or 0 for c in results["cells"]] + [1])
    for j, budget in enumerate(plan.budgets):
        if results["targets"][budget_label(budget)] is None:
            ax.text(j, 0.02 * top, "no strategy learned:\nnot measured", ha="center", va="bottom", fontsize=8)
    for i, (strategy, colour) in enumerate(_colours(plan).items()):
        for j, budget in enumerate(plan.budgets):
            cell = cells[(strategy, budget_label(budget))]
            x = j + (i - (len(plan.strategies) - 1) / 2) * width
            if cell["reached_target"] is None:
                continue
            if cell["epochs_to_target"] is None:
                ax.text(x, 0.02 * top, "not\nreached", ha="center", va="bottom", fontsize=7, color=colour)
                continue
            every_seed = cell["reached_target"] == f"{len(plan.seeds)}/{len(plan.seeds)}"
            # a mean over only the seeds that got there flatters: such a bar is hollow, with how many did
            ax.bar(x, cell["epochs_to_target"], width, **_bar_style(colour, every_seed))
            if not every_seed:
                ax.text(x, cell["epochs_to_target"], cell["reached_target"], ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(plan.budgets)), [_budget_title(b, patients) for b in plan.budgets], fontsize=8)
    ax.set(xlim=(-0.5, len(plan.budgets) - 0.5), ylabel="epochs to the target (mean over seeds)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Convergence speed: epochs to {plan.convergence_fraction:.0%} of each budget's best", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    handles = [Patch(color=c) for c in _colours(plan).values()]
    labels = list(plan.strategies)
    if len(plan.seeds) > 1:
        handles.append(Patch(**_bar_style("grey", every_seed=False)))
        labels.append("hollow: not every seed reached it (mean of those that did)")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, fontsize="small")
    fig.tight_layout(rect=(0, 0.06 * -(-len(labels) // 4), 1, 1))
    return save_figure(fig, path)


def _bar_style(colour: str, every_seed: bool) -> dict[str, Any]:
    if every_seed:
        return {"color": colour}
    return {"facecolor": "none", "edgecolor": colour, "hatch": "//", "linewidth": 1.5}


def _ran(context: dict[str, Any]) -> str:
    minutes = f"{context['seconds'] / 60:.1f} minutes"
    if context["ran"] == context["runs"]:
        ran = f"It ran all {context['runs']} runs in {minutes}."
    else:
        ran = f"It ran {context['ran']} of the {context['runs']} runs in {minutes}; it read the others from its folder."
    total = f"{context['run_seconds'] / 60:.1f} minutes"
    return f"{ran} Its runs' epochs sum to {total} (each run's own clock; runs side by side overlap)."


def _seeds(plan: StudyPlan) -> str:
    return "1 seed" if len(plan.seeds) == 1 else f"{len(plan.seeds)} seeds"


def _unconverged(plan: StudyPlan, results: dict) -> list[str]:
    """A caution where runs were still improving when they ended: epochs to a target near the best then tell
    which run ended highest more than which got there first."""
    last = [run for run in results["runs"] if run["best_epoch"] == run["epochs"]]
    if not last:
        return []
    return [
        f"**Still improving**: {len(last)} of the {len(results['runs'])} fine-tuning runs scored their best in "
        f"their last epoch, so they may not have converged; more `finetune#epochs` would tell."
    ]


def _start(strategy: Strategy) -> str:
    if strategy.pretraining is not None:
        when = "its end" if strategy.epoch is None else f"epoch {strategy.epoch}"
        return f"pretraining `{strategy.pretraining}`, {when}"
    return "random initialisation" if strategy.pretrained is None else f"weights `{strategy.pretrained}`"


def _accuracy(cell: dict) -> str:
    mean, sd = cell["best_val_dice"], cell["best_val_dice_sd"]
    text = f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"
    return text + (f" ({cell['beats_reference']})" if "beats_reference" in cell else "")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report_markdown(plan: StudyPlan, results: dict, context: dict[str, Any]) -> str:
    """``context``: ``title``, ``command``, ``machine``, ``finished`` (a time), ``seconds`` (the command's),
    ``run_seconds`` (every run's epochs, added up), ``ran`` and ``runs`` (the runs it ran, of all pretraining
    and fine-tuning runs), ``patients`` (per budget
    label), ``pretraining`` (one summary dict per run) and ``data_note`` (where the data comes from)."""
    cells = {(c["strategy"], c["label_budget"]): c for c in results["cells"]}
    budgets = [budget_label(b) for b in plan.budgets]
    titles = [_budget_title(b, context["patients"]) for b in plan.budgets]
    accuracy = [[s] + [_accuracy(cells[(s, b)]) for b in budgets] for s in plan.strategies]
    convergence = []
    for s in plan.strategies:
        row = [s]
        for b in budgets:
            cell = cells[(s, b)]
            if cell["reached_target"] is None:
                row.append("not measured")
                continue
            epochs = "not reached" if cell["epochs_to_target"] is None else f"{cell['epochs_to_target']:g}"
            speedup = "" if cell["speedup"] is None else f", {cell['speedup']:g}x"
            row.append(f"{epochs} ({cell['reached_target']}{speedup})")
        convergence.append(row)
    strategies = [[s.name, _start(s)] for s in plan.strategies.values()]
    pretraining = [
        [
            p["name"],
            p["recipe"],
            p["method"],
            p["init"],
            p["epochs"],
            p["images"],
            p["images_seen"],
            f"{p['train_seconds']:.0f}",
        ]
        for p in context["pretraining"]
    ]
    targets = ", ".join(
        f"{t}: {results['targets'][b]:.3f}" if results["targets"][b] is not None else f"{t}: not measured"
        for b, t in zip(budgets, titles)
    )
    unlearned = [
        f"{t} ({results['best_mean_val_dice'][b]:.3f})"
        for b, t in zip(budgets, titles)
        if results["targets"][b] is None
    ]
    reference = plan.reference or "none"
    parts = [
        f"# {context['title']}",
        f"Made by `{context['command']}` on {context['machine']}, finished {context['finished']}. {_ran(context)} "
        f"{len(plan.finetune)} fine-tuning runs: {len(plan.strategies)} strategies x {len(plan.budgets)} label "
        f"budgets x {_seeds(plan)}. {context['data_note']}",
        "## Where fine-tuning starts",
        _table(["strategy", "fine-tuning starts from"], strategies),
    ]
    if pretraining:
        parts += [
            "## Pretraining",
            _table(
                ["run", "recipe", "method", "init", "epochs", "images in its data", "images seen", "seconds"],
                pretraining,
            ),
        ]
    parts += [
        "## Accuracy",
        "Best validation Dice (3D per volume, mean of RV, MYO and LV) of each run"
        + (f", mean ± standard deviation over {_seeds(plan)}" if len(plan.seeds) > 1 else ", one seed")
        + (
            f"; in brackets, in how many seeds it beat `{plan.reference}` on the same labelled patients."
            if plan.reference
            else "."
        ),
        _table(["strategy", *titles], accuracy),
        "![data efficiency](data_efficiency.png)",
        "## Convergence",
        f"Fine-tuning epochs until a run first reaches {plan.convergence_fraction:.0%} of the best mean accuracy "
        f"any strategy reaches with that budget ({targets}); mean over the seeds that reached it, in brackets "
        f"how many did and the speed-up against `{reference}` (where every seed of both did).",
        _table(["strategy", *titles], convergence),
        *(
            [
                f"**Not measured** where no strategy's best mean Dice reached the floor of "
                f"{plan.convergence_floor:.2f} (`convergence_floor`): {', '.join(unlearned)}. Nothing learned "
                f"there, so a target near the best would be noise."
            ]
            if unlearned
            else []
        ),
        *_unconverged(plan, results),
        "![convergence](convergence.png)",
        "![epochs to target](epochs_to_target.png)",
        "## Files",
        "`results.json` (every number here, each run's curve), `results.csv` (one row per run), "
        "`finetune/STRATEGY/BUDGET/seedK/` and `pretraining/NAME/` (the runs, with their logs beside them).",
    ]
    return "\n\n".join(parts) + "\n"


def runs_csv(results: dict) -> str:
    columns = list(dict.fromkeys(key for row in results["runs"] for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(results["runs"])
    return out.getvalue()


def write_report(plan: StudyPlan, results: dict, context: dict[str, Any], out: Path) -> list[Path]:
    """The figures, ``report.md`` and ``results.csv`` in ``out``; each written atomically."""
    patients = context["patients"]
    paths = [
        convergence_figure(plan, results, patients, out / "convergence.png"),
        data_efficiency_figure(plan, results, patients, out / "data_efficiency.png"),
        epochs_to_target_figure(plan, results, patients, out / "epochs_to_target.png"),
    ]
    for name, text in (("report.md", report_markdown(plan, results, context)), ("results.csv", runs_csv(results))):
        write_text_atomic(out / name, text)
        paths.append(out / name)
    return paths
