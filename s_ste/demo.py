"""A one-minute S-STE demo: fit a small MLP to a fixed random teacher, dense vs 2:4 sparse.

    python -m s_ste.demo [--steps 300] [--recipe s-ste] [--device cpu|cuda] [--fp8]

Prints the training loss as it goes and, at the end, the validation MSE (relative to the
target's variance) of the dense model and of the sparsified one, and the fraction of zeros
in the sparse weights ŵ.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import s_ste


def make_mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_hidden), nn.GELU(),
                         nn.Linear(d_hidden, d_out))


def train(model: nn.Module, teacher: nn.Module, steps: int, batch: int, device: str, log_every: int, label: str) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator(device="cpu").manual_seed(1)
    d_in = teacher[0].in_features
    for step in range(1, steps + 1):
        x = torch.randn(batch, d_in, generator=gen).to(device)
        with torch.no_grad():
            target = teacher(x)
        loss = nn.functional.mse_loss(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == 1:
            print(f"  [{label}] step {step:4d}  train loss {loss.item():.4f}")
    x = torch.randn(4096, d_in, generator=gen).to(device)
    model.eval()
    with torch.no_grad():
        target = teacher(x)
        # Relative to the target's variance: 1.0 is a model that predicts the mean.
        return (nn.functional.mse_loss(model(x), target) / target.var()).item()


def sparse_zero_fraction(model: nn.Module) -> float:
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, s_ste.SparseLinear):
            w_hat = m.sparse_weight().detach()
            zeros += int((w_hat == 0).sum())
            total += w_hat.numel()
    return zeros / max(total, 1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--recipe", default="s-ste", choices=["ste", "sr-ste", "s-ste"])
    parser.add_argument("--fp8", action="store_true", help="simulate FP8 GEMM operands")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    d_in, d_out = 64, 32
    teacher = make_mlp(d_in, args.hidden, d_out).to(args.device).eval()
    torch.manual_seed(1)
    dense = make_mlp(d_in, args.hidden, d_out).to(args.device)
    sparse = make_mlp(d_in, args.hidden, d_out).to(args.device)
    sparse.load_state_dict(dense.state_dict())
    # The last layer (32 outputs) stays dense like a model's head; the hidden layers go 2:4.
    s_ste.sparsify(sparse, recipe=args.recipe, fp8=args.fp8, skip=["4"])

    t0 = time.perf_counter()
    results = {
        "dense_val_loss": train(dense, teacher, args.steps, args.batch, args.device, max(args.steps // 6, 1), "dense"),
        f"{args.recipe}_val_loss": train(sparse, teacher, args.steps, args.batch, args.device, max(args.steps // 6, 1),
                                         args.recipe + ("+fp8" if args.fp8 else "")),
        "sparse_zero_fraction": sparse_zero_fraction(sparse),
    }
    print(f"validation MSE / Var(target): dense {results['dense_val_loss']:.4f}, "
          f"{args.recipe}{'+fp8' if args.fp8 else ''} {results[f'{args.recipe}_val_loss']:.4f}")
    print(f"sparse weights: {100 * results['sparse_zero_fraction']:.1f}% zeros (2:4 → at least 50%), "
          f"{time.perf_counter() - t0:.1f} s on {args.device}")
    return results


if __name__ == "__main__":
    main()
