"""Why does S-STE trail (or lead) STE in examples/pretrain_gpt.py? Ablations and measurements.

    python examples/recipe_diagnostics.py run --out /tmp/diag [--only mvue,lr,warmup] -- <pretrain_gpt.py args>
    python examples/recipe_diagnostics.py report --main bench/results/pretrain_cpu.json --out /tmp/diag

`run` trains ste and s-ste (the pair in question) under variants of the main run's configuration
(the arguments after `--`, minus --recipes/--seeds/--name/--results-dir, which it sets):

- mvue:   --no-mvue, same seeds as the main run (paired with its MVUE runs);
- lr:     half and double the main run's learning rate;
- warmup: a short and a long warm-up.

`report` prints markdown: per-layer β (frozen at init) against the least-squares β of the trained
weight; the flip rates of ste and s-ste per step and per evaluation interval; the paired
s-ste − ste gap of each variant next to the main run's. Nothing here changes a recipe.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import seed_stats  # noqa: E402

PAIR = "ste,s-ste"


def value_of(args: list[str], flag: str, default: str) -> str:
    return args[args.index(flag) + 1] if flag in args else default


def without(args: list[str], flags: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


def variants(base: list[str], only: set[str], variant_seeds: int = 2) -> list[tuple[str, list[str], int]]:
    """(name, extra args, seeds) of every ablation: mvue with the main run's seeds, the others with variant_seeds."""
    lr = float(value_of(base, "--lr", "1e-3"))
    warmup = int(value_of(base, "--warmup", "60"))
    steps = int(value_of(base, "--steps", "600"))
    seeds = int(value_of(base, "--seeds", "3"))
    rest = without(base, ("--lr", "--warmup", "--seeds"))
    out = [
        ("mvue", "no_mvue", [*rest, "--lr", str(lr), "--warmup", str(warmup), "--no-mvue"], seeds),
        ("lr", f"lr{lr / 2:g}", [*rest, "--lr", str(lr / 2), "--warmup", str(warmup)], variant_seeds),
        ("lr", f"lr{lr * 2:g}", [*rest, "--lr", str(lr * 2), "--warmup", str(warmup)], variant_seeds),
        ("warmup", f"warmup{max(1, warmup // 6)}", [*rest, "--lr", str(lr), "--warmup", str(max(1, warmup // 6))],
         variant_seeds),
        ("warmup", f"warmup{min(steps // 2, warmup * 3)}",
         [*rest, "--lr", str(lr), "--warmup", str(min(steps // 2, warmup * 3))], variant_seeds),
    ]
    return [(name, args, n) for group, name, args, n in out if group in only]


def run(out: str, base: list[str], only: set[str], variant_seeds: int) -> None:
    base = without(base, ("--recipes", "--name", "--results-dir"))
    os.makedirs(out, exist_ok=True)
    for name, args, seeds in variants(base, only, variant_seeds):
        if os.path.exists(os.path.join(out, f"{name}.json")):
            print(f"{name}: done already", flush=True)
            continue
        cmd = [sys.executable, os.path.join(HERE, "pretrain_gpt.py"), *args, "--recipes", PAIR, "--seeds", str(seeds),
               "--name", name, "--results-dir", out]
        print(" ".join(cmd), flush=True)
        with open(os.path.join(out, f"{name}.log"), "w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)


def load(path: str) -> dict:
    """{runs, config (None for a one-seed file), complete} of a pretrain_gpt.py results JSON."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, list):  # the one-seed format: a list of rows
        data = {"runs": data, "config": None}
    with open(path.replace(".json", ".md")) as f:
        data["complete"] = "[PARTIAL]" not in f.read()
    return data


def load_variants(out: str) -> dict[str, dict]:
    """Every variant in `out`, the files of one variant (<name>.json, <name>_seed<N>.json) together."""
    variants: dict[str, dict] = {}
    for f in sorted(os.listdir(out)):
        if not f.endswith(".json") or f.endswith("_curves.json"):
            continue
        d = load(os.path.join(out, f))
        v = variants.setdefault(f[:-5].split("_seed")[0], {"runs": [], "config": None, "complete": True})
        v["runs"] += d["runs"]
        v["config"] = v["config"] or d["config"]
        v["complete"] &= d["complete"]
    return variants


def beta_table(main: dict) -> str:
    """Per layer, mean over seeds: frozen β (S-STE), the least-squares β of the trained weight, |βS(w)|/|w|."""
    rows: dict[str, dict[str, list]] = {}
    for r in main["runs"]:
        if r["recipe"] not in ("s-ste", "ste"):
            continue
        for layer in r["layers"]:
            d = rows.setdefault(layer["name"], {})
            if r["recipe"] == "s-ste":
                for k in ("beta", "beta_lsq_final", "norm_ratio_init", "norm_ratio_final"):
                    d.setdefault(k, []).append(layer[k])
            else:
                d.setdefault("ste_lsq_final", []).append(layer["beta_lsq_final"])

    def m(v):
        return f"{sum(v) / len(v):.3f}" if v else ""
    head = ("| layer | β frozen at init (s-ste) | LSQ β of the trained s-ste weight "
            "| LSQ β of the trained ste weight | ‖βS(w)‖/‖w‖ at init | ‖βS(w)‖/‖w‖ at the end |\n"
            "|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {n} | {m(d.get('beta', []))} | {m(d.get('beta_lsq_final', []))} | {m(d.get('ste_lsq_final', []))} "
        f"| {m(d.get('norm_ratio_init', []))} | {m(d.get('norm_ratio_final', []))} |\n" for n, d in rows.items())


def flip_table(main: dict, curves: dict) -> str:
    """Mean flip rate per step (all / last 10 % of steps) and per evaluation interval, mean ± se over seeds."""
    head = ("| recipe | flip rate / step, whole run | flip rate / step, last 10 % | "
            "mask bits changed per eval interval: first | last |\n|---|---|---|---|---|\n")
    body = ""
    for recipe in main["recipes"]:
        runs = [r for r in main["runs"] if r["recipe"] == recipe and r.get("flip_rate") is not None]
        if not runs:
            continue
        cs = [curves[f"{recipe}/{r['seed']}"] for r in runs]
        last = [sum(c["flip_rate"][-len(c["flip_rate"]) // 10:]) / len(c["flip_rate"][-len(c["flip_rate"]) // 10:])
                for c in cs]
        body += (f"| {recipe} | {seed_stats.pm(*seed_stats.mean_se([r['flip_rate'] for r in runs]), digits=5)} "
                 f"| {seed_stats.pm(*seed_stats.mean_se(last), digits=5)} "
                 f"| {seed_stats.pm(*seed_stats.mean_se([c['interval_flip_rate'][0] for c in cs]), digits=4)} "
                 f"| {seed_stats.pm(*seed_stats.mean_se([c['interval_flip_rate'][-1] for c in cs]), digits=4)} |\n")
    return head + body


def setting(name: str, c: dict | None) -> str:
    return f"lr {c['lr']:g}, warm-up {c['warmup']}, mvue {c['mvue']}" if c else name


def gap_row(name: str, data: dict, main: dict) -> str:
    table = seed_stats.by_recipe_and_seed(data["runs"])
    gap, se = seed_stats.paired(table, "s-ste", "ste")
    # The variant's effect on each recipe, paired with the main run's runs of the same seeds.
    both = {**{f"main {k}": v for k, v in seed_stats.by_recipe_and_seed(main["runs"]).items()}, **table}
    effect = {k: seed_stats.paired(both, k, f"main {k}") for k in ("ste", "s-ste")} if data is not main else {}
    loss = {k: seed_stats.mean_se([r["final_val_loss"] for r in table[k].values()]) for k in ("ste", "s-ste")
            if k in table}
    n = len(set(table.get("ste", {})) & set(table.get("s-ste", {})))
    return (f"| {name} | {setting(name, data['config'])} | {n} "
            f"| {seed_stats.pm(*loss.get('ste', (None, None)))} | {seed_stats.pm(*loss.get('s-ste', (None, None)))} "
            f"| {seed_stats.pm(gap, se, signed=True)} "
            f"| {seed_stats.pm(*effect.get('ste', (None, None)), signed=True)} "
            f"| {seed_stats.pm(*effect.get('s-ste', (None, None)), signed=True)} |"
            f"{'' if data['complete'] else ' partial'}\n")


def report(main_path: str, out: str) -> None:
    main = load(main_path)
    main["config"]["seeds"] = sorted({r["seed"] for r in main["runs"]})
    with open(main_path.replace(".json", "_curves.json")) as f:
        curves = json.load(f)
    print("### β per layer (mean over seeds)\n")
    print(beta_table(main))
    print("### Flip rates (mean ± se over seeds)\n")
    print(flip_table(main, curves))
    print("### The s-ste − ste gap under ablations (paired over the seeds each variant ran)\n")
    print("| variant | setting | seeds | ste final val loss | s-ste final val loss | s-ste − ste (paired) "
          "| effect on ste (variant − main, paired) | effect on s-ste (paired) |\n|---|---|---|---|---|---|---|---|")
    print(gap_row("main run", main, main), end="")
    for name, data in load_variants(out).items():
        print(gap_row(name, data, main), end="")


def main() -> None:
    argv = sys.argv[1:]
    base = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--out", required=True, help="folder of the ablation runs")
    p.add_argument("--main", help="report: the main run's <name>.json")
    p.add_argument("--only", default="mvue,lr,warmup", help="run: comma-separated subset of mvue,lr,warmup")
    p.add_argument("--variant-seeds", type=int, default=2, help="run: seeds of the lr and warm-up variants")
    a = p.parse_args(argv)
    if a.command == "run":
        run(a.out, base, set(a.only.split(",")), a.variant_seeds)
    else:
        report(a.main, a.out)


if __name__ == "__main__":
    main()
