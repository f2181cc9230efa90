"""The per-shape answer a user can act on: which of s-ste / tuned cuSPARSELt / dense is fastest,
by how much, and whether 2:4 is worth using there (bench_gemm per GEMM, bench_layer per step)."""
from __future__ import annotations

MARGINAL = 1.1  # a 2:4 speed-up over dense below this does not pay for the accuracy risk of pruning
DENSE, OURS, CUSPARSELT = "dense", "s-ste", "cuSPARSELt"
COLUMNS = ["fastest", "fastest_by", "use_24"]


def verdict(times: dict[str, float | None]) -> dict:
    """times: {DENSE, OURS, CUSPARSELT} -> time (smaller is faster; None: not measured, or its
    output failed the check). Returns the fields COLUMNS: the fastest, its lead over the
    second (time ratio), and a one-line answer."""
    have = {k: t for k, t in times.items() if t}
    if not have:
        return {"fastest": None, "fastest_by": None, "use_24": "n/a (nothing measured)"}
    order = sorted(have, key=have.get)
    fastest = order[0]
    by = have[order[1]] / have[fastest] if len(order) > 1 else None
    dense = have.get(DENSE)
    sparse = {k: t for k, t in have.items() if k != DENSE}
    if dense is None:
        answer = f"n/a (no dense time; fastest 2:4: {fastest})"
    elif not sparse:
        answer = "n/a (no 2:4 time)"
    elif fastest == DENSE:
        best = min(sparse, key=sparse.get)
        answer = f"no: dense is fastest (best 2:4, {best}: {dense / sparse[best]:.2f}x dense)"
    else:
        gain = dense / have[fastest]
        others = [f"{gain_over:.2f}x {k}" for k in sparse if k != fastest for gain_over in [sparse[k] / have[fastest]]]
        detail = ", ".join([f"{gain:.2f}x dense", *others])
        answer = (f"marginal: {fastest} only {gain:.2f}x dense" if gain < MARGINAL
                  else f"yes, with {fastest} ({detail})")
    return {"fastest": fastest, "fastest_by": by, "use_24": answer}
