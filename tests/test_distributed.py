"""SparseLinear / sparsify under DDP and FSDP2 (fully_shard): 2 CPU ranks on gloo must train
to the same weights as one process on the same global batch.

MVUE draws are keyed per rank (seed + rank·2³²), so the single-process reference computes
each rank's half of the batch with that rank's key and averages the gradients, as DDP/FSDP do.
SGD with momentum (linear in the gradients): Adam's first steps are ±lr whatever the gradient's
size, so a last-bit difference in a near-zero gradient (reduction order) would flip a whole step.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import s_ste

WORLD, STEPS, BATCH, D = 2, 3, 8, 64


def make_model(fast: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, 16))
    s_ste.sparsify(model, recipe="s-ste", include=["0", "2"], fast=fast, layout="sm90" if fast else None)
    return model


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 16, D, generator=g), torch.randn(BATCH, 16, 16, generator=g)) for _ in range(STEPS)]


def loss_fn(model, x, y, fast):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
        out = model(x)
    return (out.float() - y).square().mean()


def reference(fast: bool) -> dict:
    """One process: per step, each rank's shard with that rank's MVUE key, gradients averaged."""
    model = make_model(fast)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    layers = [m for m in model.modules() if isinstance(m, s_ste.SparseLinear)]
    for x, y in batches():
        opt.zero_grad()
        counts = [m.mvue_rng.clone() for m in layers]
        for r in range(WORLD):
            for m, c in zip(layers, counts):
                m._rank, m.mvue_rng = r, c.clone()
            sl = slice(r * BATCH // WORLD, (r + 1) * BATCH // WORLD)
            (loss_fn(model, x[sl], y[sl], fast) / WORLD).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def worker(rank: int, rendezvous: str, fast: bool, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        results = {}
        for engine in ("ddp", "fsdp2"):
            model = make_model(fast)
            if engine == "ddp":
                net = nn.parallel.DistributedDataParallel(model)
            else:
                from torch.distributed.fsdp import fully_shard
                for layer in model:
                    if isinstance(layer, nn.Linear):
                        fully_shard(layer)
                net = fully_shard(model)
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
            for x, y in batches():
                sl = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
                opt.zero_grad()
                loss_fn(net, x[sl], y[sl], fast).backward()
                opt.step()
            state = {}
            for k, v in model.state_dict().items():
                v = v.full_tensor() if hasattr(v, "full_tensor") else v  # FSDP2: DTensor shards
                state[k] = v.detach().clone()
            results[engine] = state
            if engine == "fsdp2" and fast:
                results["fsdp2_cache"] = fsdp2_cache_checks(model, net)
        if rank == 0:
            torch.save(results, out)  # (a file: tensors through an mp queue need the sender alive)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # Skip the interpreter's teardown: c10d/gloo threads destroyed there now and then abort the
    # process ("terminate called without an active exception", SIGABRT) after all work is done.
    os._exit(0)


def fsdp2_cache_checks(model: nn.Module, net: nn.Module) -> list:
    """(how, FSDP2 output, unsharded reference output) after each way of changing a weight
    outside the optimizer: the fast path's compressed-weight cache must see every one."""
    x = torch.randn(4, 16, D, generator=torch.Generator().manual_seed(5))
    out = []

    def compare(how):
        full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
                for k, v in model.state_dict().items()}
        ref = make_model(True)
        ref.load_state_dict(full)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out.append((how, net(x).float(), ref(x).float()))

    compare("trained")
    with torch.no_grad():
        model[0].weight.mul_(0.5)  # the sharded DTensor parameter, in place
    compare("no_grad mul_ of the sharded parameter")
    state = model.state_dict()
    state["2.weight"] = state["2.weight"] * 2.0
    model.load_state_dict(state)
    compare("load_state_dict")
    return out


fast_ops = hasattr(torch.ops.s_ste, "mvue_24_t_compress") and hasattr(torch.ops.s_ste, "quantize_fp8_scaled")


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
@pytest.mark.parametrize("fast", [False, pytest.param(True, marks=pytest.mark.skipif(not fast_ops, reason="old extension"))])
@pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")
def test_ddp_and_fsdp2_match_one_process(fast, tmp_path):
    out = str(tmp_path / "rank0.pt")
    rendezvous = str(tmp_path / "rendezvous")  # a file, not a port: no race with other test runs
    mp.start_processes(worker, args=(rendezvous, fast, out), nprocs=WORLD, start_method="spawn", join=True)
    results = torch.load(out)
    expect = reference(fast)
    for how, got, want in results.pop("fsdp2_cache", []):
        assert torch.equal(got, want), f"FSDP2, stale compressed weight after {how}"
    for engine, state in results.items():
        assert state.keys() == expect.keys()
        for k, v in expect.items():
            assert torch.allclose(state[k].float(), v.float(), rtol=1e-4, atol=1e-5), f"{engine}: {k}"
        assert torch.equal(state["0.scale"], expect["0.scale"]), f"{engine}: β is the same on every rank"
    # One MVUE draw per step on every rank (a rank's key differs by its seed, not its count).
    assert expect["0.mvue_state"].tolist() == results["ddp"]["0.mvue_state"].tolist() == [1, STEPS]  # seed = sparsify seed + module index
    assert not torch.equal(expect["0.weight"], make_model(False)[0].weight.detach()), "trained"
