"""Multi-seed summary of examples/pretrain_gpt.py runs: mean ± standard error per recipe.

Used by `pretrain_gpt.py --seeds N`; also runnable on its own to re-render the table and the
plot from the per-run JSON it wrote:

    python examples/seed_stats.py bench/results/pretrain_cpu.json

Every seed trains every recipe from the same initial weights on the same data order, so the
differences between recipes are paired per seed: the table reports the paired mean difference
to dense and to ste (± its standard error), which is far tighter than comparing two means.
"""
from __future__ import annotations

import json
import math
import os
import sys


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """(mean, standard error = sample std / sqrt(n)); se is None for a single value."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, None
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def by_recipe_and_seed(runs: list[dict]) -> dict[str, dict[int, dict]]:
    table: dict[str, dict[int, dict]] = {}
    for r in runs:
        table.setdefault(r["recipe"], {})[r["seed"]] = r
    return table


def paired(table: dict, recipe: str, ref: str, key: str = "final_val_loss") -> tuple[float | None, float | None]:
    """Mean ± se over the seeds both recipes ran of (recipe − ref)."""
    if ref not in table or recipe not in table or recipe == ref:
        return None, None
    seeds = sorted(set(table[recipe]) & set(table[ref]))
    if not seeds:
        return None, None
    return mean_se([table[recipe][s][key] - table[ref][s][key] for s in seeds])


def summarize(runs: list[dict], recipes: list[str]) -> list[dict]:
    """One row per recipe: seeds, mean ± se of the final validation loss, paired deltas, means of the rest."""
    table = by_recipe_and_seed(runs)
    rows = []
    for recipe in recipes:
        if recipe not in table:
            continue
        rs = [table[recipe][s] for s in sorted(table[recipe])]
        loss, loss_se = mean_se([r["final_val_loss"] for r in rs])
        d_dense, d_dense_se = paired(table, recipe, "dense")
        d_ste, d_ste_se = paired(table, recipe, "ste")
        flips = [r["flip_rate"] for r in rs if r.get("flip_rate") is not None]
        rows.append({
            "recipe": recipe, "seeds": len(rs), "final_val_loss": loss, "final_val_loss_se": loss_se,
            "bits_per_byte": loss / math.log(2),
            "delta_vs_dense": d_dense, "delta_vs_dense_se": d_dense_se,
            "delta_vs_ste": d_ste, "delta_vs_ste_se": d_ste_se,
            "flip_rate": mean_se(flips)[0] if flips else None,
            "ms_per_step": mean_se([r["ms_per_step"] for r in rs])[0],
            "per_seed": [r["final_val_loss"] for r in rs],
        })
    return rows


def pm(m: float | None, se: float | None, digits: int = 4, signed: bool = False) -> str:
    if m is None:
        return ""
    s = f"{m:+.{digits}f}" if signed else f"{m:.{digits}f}"
    return s + (f" ± {se:.{digits}f}" if se is not None else "")


def _sci(v: float | None) -> str:
    return "" if v is None else f"{v:.2e}"


def markdown_table(rows: list[dict]) -> str:
    head = ("| recipe | seeds | final val loss (mean ± se) | bits/byte | Δ vs dense (paired) | Δ vs ste (paired) "
            "| flip rate / step | ms / step |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['recipe']} | {r['seeds']} | {pm(r['final_val_loss'], r['final_val_loss_se'])} | "
        f"{r['bits_per_byte']:.4f} | {pm(r['delta_vs_dense'], r['delta_vs_dense_se'], signed=True)} | "
        f"{pm(r['delta_vs_ste'], r['delta_vs_ste_se'], signed=True)} | "
        f"{_sci(r['flip_rate'])} | {r['ms_per_step']:.0f} |\n"
        for r in rows)
    return head + body


def per_seed_table(runs: list[dict], recipes: list[str]) -> str:
    table = by_recipe_and_seed(runs)
    seeds = sorted({r["seed"] for r in runs})
    head = "| recipe | " + " | ".join(f"seed {s}" for s in seeds) + " |\n|" + "---|" * (len(seeds) + 1) + "\n"
    body = "".join("| " + recipe + " | " + " | ".join(
        f"{table[recipe][s]['final_val_loss']:.4f}" if s in table[recipe] else "" for s in seeds) + " |\n"
        for recipe in recipes if recipe in table)
    return head + body


def mean_curve(curves: list[dict], xkey: str, ykey: str) -> tuple[list, list, list]:
    """(x, mean, se) over the runs' curves, on the x values they all share."""
    xs = sorted(set.intersection(*(set(c[xkey]) for c in curves))) if curves else []
    per = [dict(zip(c[xkey], c[ykey])) for c in curves]
    ms, ses = [], []
    for x in xs:
        m, se = mean_se([p[x] for p in per])
        ms.append(m)
        ses.append(se or 0.0)
    return xs, ms, ses


def plot(runs: list[dict], recipes: list[str], path: str) -> bool:
    """Final loss with error bars (and each seed), mean validation curves ± se, mean flip-rate curves."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (python -m pip install matplotlib)")
        return False
    table = by_recipe_and_seed(runs)
    rows = summarize(runs, recipes)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for i, r in enumerate(rows):
        color = f"C{recipes.index(r['recipe'])}"
        axes[0].errorbar([i], [r["final_val_loss"]], yerr=[r["final_val_loss_se"] or 0.0], fmt="o", capsize=6,
                         color=color, ms=8)
        axes[0].scatter([i + 0.15] * len(r["per_seed"]), r["per_seed"], color=color, s=10, alpha=0.5)
        curves = [run["curve"] for run in table[r["recipe"]].values() if "curve" in run]
        if curves:
            x, m, se = mean_curve(curves, "val_step", "val_loss")
            axes[1].plot(x, m, marker="o", ms=3, color=color, label=r["recipe"])
            axes[1].fill_between(x, [a - b for a, b in zip(m, se)], [a + b for a, b in zip(m, se)], color=color,
                                 alpha=0.2)
            if curves[0].get("flip_rate"):
                x, m, _ = mean_curve(curves, "flip_step", "flip_rate")
                k = max(1, len(m) // 100)  # smooth over k steps
                axes[2].plot(x[::k], [sum(m[j:j + k]) / len(m[j:j + k]) for j in range(0, len(m), k)], color=color,
                             lw=1, label=r["recipe"])
    axes[0].set_xticks(range(len(rows)), [r["recipe"] for r in rows])
    n = max(r["seeds"] for r in rows)
    axes[0].set(title=f"final validation loss, mean ± se over {n} seeds (dots: seeds)", ylabel="nats/byte")
    axes[1].set(title="validation loss, mean ± se over seeds", xlabel="step")
    axes[2].set(title="mask flip rate per optimizer step (mean over seeds)", xlabel="step", yscale="log")
    lo = min(min(r["per_seed"]) for r in rows)
    axes[1].set_ylim(lo - 0.05, lo + 0.6)  # the late curves, where the recipes differ
    for ax in axes:
        if ax.lines and ax is not axes[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> None:
    path = sys.argv[1]
    with open(path) as f:
        data = json.load(f)
    runs, recipes = data["runs"], data["recipes"]
    print(markdown_table(summarize(runs, recipes)))
    print(per_seed_table(runs, recipes))
    curves_path = path.replace(".json", "_curves.json")
    if os.path.exists(curves_path):
        with open(curves_path) as f:
            curves = json.load(f)
        for r in runs:
            r["curve"] = curves.get(f"{r['recipe']}/{r['seed']}", {})
    png = path.replace(".json", ".png")
    if plot(runs, recipes, png):
        print("wrote", png)


if __name__ == "__main__":
    main()
