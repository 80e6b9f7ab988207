"""``ttc bench``'s text, plots and report: ``format_summary``, the four PNG figures and ``report.md``
(see :mod:`ttc_agents._apps.bench`)."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from ttc_agents._apps.bench_results import PLOTS, REPORT, SUMMARY
from ttc_agents._apps.bench_stats import setting_order, style_of, thinking_shade
from ttc_agents._routing.policy import Cost

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["draw_curves", "format_summary", "spend_text", "write_outputs"]


def spend_text(cost: Cost) -> str:
    text = f"{cost.samples:,.0f} samples, {cost.tokens:,.0f} tok, ${cost.usd:.4f}"
    return text + (f", {cost.flops:.3g} FLOPs" if cost.flops else "")


def _label(setting: str) -> str:
    return style_of(setting)[0]


def _shaded(colour: str, shade: float) -> Any:
    """``colour`` blended towards white (shade < 0) or black (shade > 0) by ``|shade|``."""
    if not shade:
        return colour
    from matplotlib.colors import to_rgb

    target = 0.0 if shade > 0 else 1.0
    return tuple(c + (target - c) * abs(shade) for c in to_rgb(colour))


def _ci_text(stat: Mapping[str, Any], key: str = "ci", digits: int = 2) -> str:
    ci = stat.get(key)
    return "-" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _best_per_budget(settings: Sequence[Mapping[str, Any]]) -> set[tuple[str, int]]:
    best: dict[int, float] = {}
    for s in settings:
        best[s["budget"]] = max(best.get(s["budget"], -1.0), s["accuracy"]["mean"])
    return {(s["setting"], s["budget"]) for s in settings if math.isclose(s["accuracy"]["mean"], best[s["budget"]])}


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as text: one line per setting (``*`` marks the most accurate at its N), then
    accuracy per difficulty bin, then the run's cost against the naive sum."""
    settings = summary["settings"]
    best = _best_per_budget(settings)
    seeds = max((s["seeds"] for s in settings), default=0)
    lines = [
        f"{'setting':<24} {'N':>4}  {'accuracy':>8}  {'CI seeds':<12}  {'CI questions':<12} {'samples/q':>9} "
        f"{'tokens/q':>9} {'USD/q':>9} {'FLOPs/q':>9}"
    ]
    for s in settings:
        mark = "*" if (s["setting"], s["budget"]) in best else " "
        lines.append(
            f"{_label(s['setting']):<24} {s['budget']:>4} {mark}{s['accuracy']['mean']:>8.3f}  "
            f"{_ci_text(s['accuracy']):<12}  {_ci_text(s['accuracy'], 'ci_questions'):<12} "
            f"{s['samples']['mean']:>9.1f} {s['tokens']['mean']:>9.0f} {s['usd']['mean']:>9.2e} "
            f"{s['flops']['mean']:>9.2e}"
        )
    lines.append(
        f"(* most accurate at its N. Means over {seeds} seed(s); 95% intervals: Student-t over seeds, "
        "bootstrap over questions)"
    )
    if summary["bins"]:
        source = summary.get("run", {}).get("difficulty", "")
        heads = [b["label"].split(" (")[0] for b in summary["bins"]]
        lines.append("")
        lines.append(f"accuracy per difficulty bin ({source}; questions: {[b['questions'] for b in summary['bins']]})")
        lines.append(f"{'setting':<24} {'N':>4}  " + " ".join(f"{h:>8}" for h in heads))
        table = {(b["bin"], s["setting"], s["budget"]): s for b in summary["bins"] for s in b["settings"]}
        for s in settings:
            cells = []
            for b in summary["bins"]:
                cell = table.get((b["bin"], s["setting"], s["budget"]))
                cells.append(f"{cell['accuracy']['mean']:>8.3f}" if cell else f"{'-':>8}")
            lines.append(f"{_label(s['setting']):<24} {s['budget']:>4}  " + " ".join(cells))
    if summary.get("matched"):
        lines.append("")
        lines.append("router vs best-of-N weighted at the router's own mean tokens (95% bootstrap over questions)")
        lines.append(
            f"{'N':>4} {'router':>7} {'tokens/q':>9} {'bon-w@tokens':>12} {'delta':>7} {'CI':<18} "
            f"{'compute factor':>14}"
        )
        for m in summary["matched"]:
            factor = m["compute_factor"]
            factor_text = ">max" if math.isinf(factor) or factor >= 1e6 else f"{factor:.2f}x"
            lines.append(
                f"{m['N']:>4} {m['accuracy']:>7.3f} {m['tokens']:>9.0f} {m['best_of_n_at_tokens']:>12.3f} "
                f"{m['delta']:>+7.3f} [{m['delta_ci'][0]:+.3f}, {m['delta_ci'][1]:+.3f}] {factor_text:>14}"
            )
    cost = summary["cost"]
    grid, cells_cost = Cost.model_validate(cost["grid"]), Cost.model_validate(cost["cells"])
    lines.append("")
    lines.append(f"run cost (pools shared): {spend_text(grid)}")
    lines.append(f"every cell on its own:   {spend_text(cells_cost)}  (pool reuse saved {cost['saved_tokens']:.0%})")
    return "\n".join(lines)


def draw_curves(
    ax: Axes,
    settings: Sequence[Mapping[str, Any]],
    x: Literal["tokens", "budget"],
    band: bool,
    *,
    labels: Mapping[str, str] | None = None,
) -> None:
    """One line per setting through its budgets (in order of cost against tokens), in the settings' order
    and style (``ttc bench``'s and ``ttc demo``'s figures); ``band``: shade the bootstrap interval over
    questions; ``labels``: legend labels instead of the settings' own."""
    by_setting: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in settings:
        by_setting[s["setting"]].append(s)
    for setting in sorted(by_setting, key=setting_order):
        # Against tokens, a line runs left to right: the router's cost need not rise with N, and a
        # line joined by N would double back on itself.
        order = (lambda s: (s["tokens"]["mean"], s["budget"])) if x == "tokens" else (lambda s: s["budget"])
        points = sorted(by_setting[setting], key=order)
        label, base_colour, marker = style_of(setting)
        colour = _shaded(base_colour, thinking_shade(setting))
        label = (labels or {}).get(setting, label)
        xs = [s["tokens"]["mean"] if x == "tokens" else s["budget"] for s in points]
        ys = [s["accuracy"]["mean"] for s in points]
        size = 11 if marker == "*" else 6
        # Majority is often on top of weighted: dashed keeps both visible.
        style = "--" if setting.partition("@")[0] == "best_of_n_majority" else "-"
        ax.plot(xs, ys, style, marker=marker, color=colour, label=label, linewidth=1.8, markersize=size)
        cis = [s["accuracy"].get("ci_questions") for s in points]
        if band and all(ci is not None for ci in cis):
            ax.fill_between(xs, [c[0] for c in cis], [c[1] for c in cis], color=colour, alpha=0.10, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_ylim(-0.02, 1.02)
    if x == "budget":
        budgets = sorted({s["budget"] for s in settings})
        ax.set_xticks(budgets, [str(b) for b in budgets])


_X_LABELS: Final = {
    "tokens": "tokens per question (prompt + completion, generator + verifier)",
    "budget": "generation budget N (samples per question for best-of-N)",
}


def _plot_overall(summary: Mapping[str, Any], path: Path, x: Literal["tokens", "budget"]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    draw_curves(ax, summary["settings"], x, band=True)
    ax.set_xlabel(_X_LABELS[x])
    ax.set_ylabel("accuracy (mean over seeds)")
    run = summary.get("run", {})
    ax.set_title(f"{run.get('model', '')} on {run.get('dataset', '')}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.text(0.99, 0.005, "bands: 95% bootstrap interval over questions", ha="right", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _plot_bins(summary: Mapping[str, Any], path: Path, x: Literal["tokens", "budget"]) -> None:
    """One panel per difficulty bin, three to a row; the legend takes a spare panel when there is one."""
    import matplotlib.pyplot as plt

    bins = summary["bins"]
    if not bins:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no difficulty bins: the problems have no level\nand no sample pool was drawn", ha="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    columns = min(3, len(bins))
    rows = math.ceil(len(bins) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.1 * rows + 0.5), sharey=True, squeeze=False)
    panels = [ax for row in axes for ax in row]
    for ax, bin_ in zip(panels, bins, strict=False):
        draw_curves(ax, bin_["settings"], x, band=False)
        ax.set_title(f"{bin_['label']}, {bin_['questions']} questions", fontsize=9)
        ax.tick_params(labelsize=8)
    for row in axes:
        row[0].set_ylabel("accuracy")
    handles, labels = panels[0].get_legend_handles_labels()
    spare = panels[len(bins) :]
    for ax in spare:
        ax.axis("off")
    fig.supxlabel(_X_LABELS[x], fontsize=9)
    run = summary.get("run", {})
    fig.suptitle(f"{run.get('model', '')} on {run.get('dataset', '')}, by difficulty", fontsize=10)
    if spare:
        spare[0].legend(handles, labels, loc="center", fontsize=9, frameon=False)
        fig.tight_layout()
    else:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=4, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.86))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _markdown_tables(summary: Mapping[str, Any]) -> list[str]:
    settings = summary["settings"]
    best = _best_per_budget(settings)
    lines = [
        "| setting | N | accuracy | 95% CI (seeds) | 95% CI (questions) | samples/q | tokens/q | USD/q | FLOPs/q |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for s in settings:
        accuracy = f"{s['accuracy']['mean']:.3f}"
        if (s["setting"], s["budget"]) in best:
            accuracy = f"**{accuracy}**"
        lines.append(
            f"| {_label(s['setting'])} | {s['budget']} | {accuracy} | {_ci_text(s['accuracy'])} | "
            f"{_ci_text(s['accuracy'], 'ci_questions')} | "
            f"{s['samples']['mean']:.1f} | {s['tokens']['mean']:.0f} | {s['usd']['mean']:.3g} | "
            f"{s['flops']['mean']:.3g} |"
        )
    if summary["bins"]:
        bins = summary["bins"]
        table = {(b["bin"], s["setting"], s["budget"]): s for b in bins for s in b["settings"]}
        lines += ["", "Accuracy per difficulty bin:", ""]
        lines.append("| setting | N | " + " | ".join(f"{b['label']} ({b['questions']} q)" for b in bins) + " |")
        lines.append("|---|---:|" + "---:|" * len(bins))
        for s in settings:
            cells = []
            for b in bins:
                cell = table.get((b["bin"], s["setting"], s["budget"]))
                cells.append("-" if cell is None else f"{cell['accuracy']['mean']:.3f}")
            lines.append(f"| {_label(s['setting'])} | {s['budget']} | " + " | ".join(cells) + " |")
    return lines


def _matched_markdown(summary: Mapping[str, Any]) -> list[str]:
    if not summary.get("matched"):
        return []
    lines = [
        "## Router at matched compute",
        "",
        "The router at generation budget N against best-of-N weighted interpolated at the router's own mean "
        "tokens (probe and verifier included); compute factor: the tokens best-of-N weighted needs to reach the "
        "router's accuracy, over the router's. 95% paired bootstrap intervals over questions.",
        "",
        "| N | router accuracy | tokens/q | best-of-N w. at those tokens | difference (95% CI) "
        "| compute factor (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for m in summary["matched"]:
        low, high = m["compute_factor_ci"]
        lines.append(
            f"| {m['N']} | {m['accuracy']:.3f} | {m['tokens']:.0f} | {m['best_of_n_at_tokens']:.3f} | "
            f"{m['delta']:+.3f} [{m['delta_ci'][0]:+.3f}, {m['delta_ci'][1]:+.3f}] | "
            f"{m['compute_factor']:.2f}x [{low:.2f}x, {high:.2f}x] |"
        )
    return [*lines, ""]


def _report(summary: Mapping[str, Any], command: str | None) -> str:
    run = summary.get("run", {})
    cost = summary["cost"]
    lines = [
        f"# ttc bench: {run.get('model')} on {run.get('dataset')}",
        "",
        f"- verifier: `{run.get('verifier')}`; strategies: {', '.join(run.get('strategies', []))}",
        f"- budgets N: {run.get('budgets')}; seeds: {run.get('seeds')}; questions: {run.get('questions')}",
        f"- difficulty bins: {run.get('difficulty')}",
        f"- intervals: {run.get('interval')}",
    ]
    if command:
        lines.insert(2, f"`{command}`\n")
    if run.get("policy"):
        lines.append(f"- router policy: `{run['policy']}` (fitted on `{run.get('policy_dataset')}`)")
        if run.get("policy_dataset") and str(run["policy_dataset"]).split(" [")[0] == run.get("dataset"):
            lines.append(
                "  - **in-sample**: the policy was fitted on this dataset; held-out accuracy will be lower "
                "(see `python -m ttc_agents.bench.router_eval`)."
            )
    grid, cells = Cost.model_validate(cost["grid"]), Cost.model_validate(cost["cells"])
    lines += [
        f"- run cost (sample pools shared): {spend_text(grid)}; every cell on its own: {spend_text(cells)} "
        f"(pool reuse saved {cost['saved_tokens']:.0%} of the tokens)",
        "",
        "## Accuracy and cost per setting",
        "",
        "Bold: the most accurate setting at its N. Costs are means per question; best-of-N cells are read "
        "from one shared sample pool and charged what a best-of-N run alone would cost.",
        "",
        *_markdown_tables(summary),
        "",
        *_matched_markdown(summary),
        "## Accuracy vs compute",
        "",
        "![accuracy vs tokens](accuracy_vs_tokens.png)",
        "",
        "![accuracy vs generation budget](accuracy_vs_samples.png)",
        "",
        "## Per difficulty bin",
        "",
        "![accuracy vs tokens per difficulty bin](difficulty_vs_tokens.png)",
        "",
        "![accuracy vs generation budget per difficulty bin](difficulty_vs_samples.png)",
        "",
        "Notes: tokens count prompt and completion of every call (generation and an LLM verifier's); beam "
        "search counts every step expansion as a sample, so compare strategies by tokens, USD or FLOPs; the "
        "router's cost includes its difficulty probe, whose samples also join its candidates, so on the "
        "generation-budget axis router@N has had N plus the probe's samples (compare it on the tokens axis).",
        "",
    ]
    return "\n".join(lines)


def write_outputs(out: str | os.PathLike[str], summary: Mapping[str, Any], *, command: str | None = None) -> list[Path]:
    """Write ``summary.json``, the four PNG plots and ``report.md`` into ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    directory = Path(out)
    paths = [directory / SUMMARY]
    paths[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    overall, per_bin = directory / PLOTS[0], directory / PLOTS[1]
    _plot_overall(summary, overall, "tokens")
    _plot_overall(summary, per_bin, "budget")
    _plot_bins(summary, directory / PLOTS[2], "tokens")
    _plot_bins(summary, directory / PLOTS[3], "budget")
    paths += [directory / name for name in PLOTS]
    report = directory / REPORT
    report.write_text(_report(summary, command), encoding="utf-8")
    paths.append(report)
    return paths
