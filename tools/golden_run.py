"""The behaviour fingerprint of a refactor: fixed-seed CPU training runs whose every output is saved.

    PYTHONPATH=. python tools/golden_run.py --out DIR   # run every variant: DIR/<variant>.pt + DIR/digest.json
    python tools/golden_run.py --compare DIR1 DIR2      # byte-compare two runs: which tensor of which variant differs

Each variant trains a 2-layer model (SparseLinear 64 -> 128, GELU, SparseLinear 128 -> 64, with biases;
74 tokens, so the weight-gradient GEMM pads its tokens) for 20 AdamW steps on fixed data, and saves the
losses, every parameter's ``.grad`` after every step, the outputs of an eval forward, and the final
``state_dict``. The variants cover every recipe × {semantic, fast sm90, fast sm80} × FP8 off/on × {float32
weights under bf16 autocast, bf16 weights}, plus a GPT-2 ``Conv1D`` layer through ``s_ste.sparsify`` and a
run under activation checkpointing. Run it at two commits with the same torch and compare: a
behaviour-neutral change leaves every byte equal (``digest.json`` holds one sha256 per tensor, so the
comparison does not depend on torch.save's container bytes).

It imports ``s_ste`` from wherever Python finds it: from the checkout under test, run with ``PYTHONPATH=.``
(a script's own folder, tools/, is what Python puts first on sys.path, not the working directory).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings

import torch
from torch import nn

STEPS = 20
TOKENS = 74
D_IN, D_HIDDEN = 64, 128
RECIPES = ("dense", "ste", "sr-ste", "s-ste")
PATHS = {"semantic": dict(fast=False), "fast-sm90": dict(fast=True, layout="sm90"),
         "fast-sm80": dict(fast=True, layout="sm80")}
DTYPES = ("f32-autocast", "bf16")


def variants() -> list[dict]:
    out = []
    for recipe in RECIPES:
        for path in PATHS:
            for fp8 in (False, True):
                for dtype in DTYPES:
                    out.append(dict(name=f"{recipe}_{path}_{'fp8' if fp8 else 'nofp8'}_{dtype}", recipe=recipe,
                                    path=path, fp8=fp8, dtype=dtype, conv1d=False, checkpoint=False))
    out.append(dict(name="s-ste_fast-sm90_nofp8_bf16_conv1d", recipe="s-ste", path="fast-sm90", fp8=False,
                    dtype="bf16", conv1d=True, checkpoint=False))
    for path in ("semantic", "fast-sm90"):
        for fp8 in (False, True):
            out.append(dict(name=f"s-ste_{path}_{'fp8' if fp8 else 'nofp8'}_bf16_checkpoint", recipe="s-ste",
                            path=path, fp8=fp8, dtype="bf16", conv1d=False, checkpoint=True))
    return out


class Net(nn.Module):
    def __init__(self, fc1: nn.Module, fc2: nn.Module, checkpoint: bool) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = fc1, nn.GELU(), fc2
        self.checkpoint = checkpoint

    def _body(self, x):
        return self.fc2(self.act(self.fc1(x)))

    def forward(self, x):
        if self.checkpoint:
            return torch.utils.checkpoint.checkpoint(self._body, x, use_reentrant=False)
        return self._body(x)


def build(v: dict) -> Net:
    import s_ste

    torch.manual_seed(1234)
    weight_dtype = torch.bfloat16 if v["dtype"] == "bf16" else torch.float32
    options = dict(recipe=v["recipe"], fp8=v["fp8"], **PATHS[v["path"]])
    if v["conv1d"]:
        from transformers.pytorch_utils import Conv1D

        net = Net(Conv1D(D_HIDDEN, D_IN), Conv1D(D_IN, D_HIDDEN), v["checkpoint"])
        net.to(weight_dtype)
        s_ste.sparsify(net, include=["fc1", "fc2"], seed=7, **options)
        return net
    fc1 = s_ste.SparseLinear(D_IN, D_HIDDEN, seed=5, dtype=weight_dtype, **options)
    fc2 = s_ste.SparseLinear(D_HIDDEN, D_IN, seed=6, dtype=weight_dtype, **options)
    return Net(fc1, fc2, v["checkpoint"])


def run(v: dict) -> dict[str, torch.Tensor]:
    net = build(v)
    gen = torch.Generator().manual_seed(99)
    x_all = torch.randn(STEPS, TOKENS, D_IN, generator=gen)
    target_all = torch.randn(STEPS, TOKENS, D_IN, generator=gen)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.01)
    autocast = v["dtype"] == "f32-autocast"
    input_dtype = torch.float32 if autocast else torch.bfloat16
    saved: dict[str, torch.Tensor] = {}
    losses = []
    for step in range(STEPS):
        x = x_all[step].to(input_dtype).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = net(x)
        loss = (y.float() - target_all[step]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(loss.detach())
        saved[f"step{step:02d}.x.grad"] = x.grad.detach().clone()
        for name, p in net.named_parameters():
            if p.grad is not None:
                saved[f"step{step:02d}.{name}.grad"] = p.grad.detach().clone()
        optimizer.step()
    saved["losses"] = torch.stack(losses)
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        saved["eval.y"] = net(x_all[0].to(input_dtype)).detach().clone()
    for key, t in net.state_dict().items():
        saved[f"state.{key}"] = t.detach().clone()
    return saved


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of dtype, shape and raw bytes (so -0.0 differs from +0.0 and NaN payloads count)."""
    t = t.detach().cpu().contiguous()
    flat = t.reshape(-1)
    raw = flat.to(torch.uint8) if t.dtype == torch.bool else flat.view(torch.uint8)
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(raw.numpy().tobytes())
    return h.hexdigest()


def main_run(out: str) -> int:
    import s_ste

    os.makedirs(out, exist_ok=True)
    digest = {"s_ste": os.path.dirname(s_ste.__file__), "torch": torch.__version__, "variants": {}}
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same reduction order on every machine
    for v in variants():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            saved = run(v)
        torch.save(saved, os.path.join(out, f"{v['name']}.pt"))
        digest["variants"][v["name"]] = {
            "tensors": {k: tensor_digest(t) for k, t in sorted(saved.items())},
            "warnings": sorted({str(w.message) for w in caught}),
        }
        print(f"{v['name']}: final loss {saved['losses'][-1].item():.6f}, {len(saved)} tensors")
    with open(os.path.join(out, "digest.json"), "w") as f:
        json.dump(digest, f, indent=1, sort_keys=True)
    return 0


def main_compare(a: str, b: str) -> int:
    with open(os.path.join(a, "digest.json")) as f:
        da = json.load(f)["variants"]
    with open(os.path.join(b, "digest.json")) as f:
        db = json.load(f)["variants"]
    bad = 0
    for name in sorted(set(da) | set(db)):
        if name not in da or name not in db:
            print(f"{name}: only in {'the first' if name in da else 'the second'} run")
            bad += 1
            continue
        ta, tb = da[name]["tensors"], db[name]["tensors"]
        diff = sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))
        if diff:
            bad += 1
            print(f"{name}: {len(diff)} tensor(s) differ, e.g. {diff[:4]}")
        if da[name]["warnings"] != db[name]["warnings"]:
            print(f"{name}: warnings differ:\n  {da[name]['warnings']}\n  {db[name]['warnings']}")
    total = len(set(da) | set(db))
    print(f"{total - bad} of {total} variants identical")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", help="folder for this run's outputs")
    group.add_argument("--compare", nargs=2, metavar="DIR", help="two run folders to compare")
    args = parser.parse_args()
    return main_run(args.out) if args.out else main_compare(*args.compare)


if __name__ == "__main__":
    sys.exit(main())
