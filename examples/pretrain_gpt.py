"""Byte-level GPT pre-training on the Python standard library: dense vs STE vs SR-STE vs S-STE vs S-STE+FP8.

The corpus is every .py file of the running Python's standard library (sysconfig's "stdlib"
path, site-packages excluded), split by file into train/validation with a fixed seed: a real
corpus on every machine, no download. The model is a small GPT (pre-norm blocks, causal
attention, GELU FFN, learned positions, head tied to the byte embedding; vocabulary 256).

Every recipe trains the same model (same initialisation, seed and data order) with the same
optimizer and schedule (nanoGPT's recipe, as in the S-STE paper's GPT-2 runs: AdamW
β=(0.9, 0.95), weight decay 0.1 on matrices, grad clip 1.0, linear warm-up then cosine decay
to lr/10). The sparse recipes replace the two FFN linears of every block (`--all-linears`:
the attention projections too); embeddings and the tied head stay dense. β is computed once
after initialisation (`reset_scale`) and frozen.

    python examples/pretrain_gpt.py                  # the H100 comparison (~5 min for all five)
    python examples/pretrain_gpt.py --tiny           # CPU smoke run (~1 min), results in a temp dir
    torchrun --nproc-per-node 8 examples/pretrain_gpt.py   # DDP: the same global batch split over ranks
    python examples/pretrain_gpt.py --seeds 5 --name pretrain_cpu ...   # mean ± se over 5 seeds per recipe
    python examples/pretrain_gpt.py --hf gpt2 --tiny # transformers' GPT2LMHeadModel (or llama) of the same size

Reports, per recipe: final validation loss and bits per byte, the mask flip rate of the sparse
weights (the fraction of all their 2:4 mask bits that changed at an optimizer step; averaged
over training, and its curve), and wall time per step (CUDA-synchronised, evaluation excluded).
Writes <results-dir>/pretrain.md, pretrain.json (rows: recipe, steps, final_val_loss,
bits_per_byte, flip_rate, ms_per_step, tokens_per_s, device, commit, ...), pretrain_curves.json
and pretrain.png (needs matplotlib; skipped with a message without it). Default results dir:
bench/results (a temp dir with --tiny). `--name` changes the file stem.

With `--seeds N` every recipe trains under seeds --seed .. --seed+N-1 (initial weights, data
order and MVUE draws; the train/validation split stays that of --seed) and the files hold the
mean ± standard error of the final validation loss per recipe, the paired differences to dense
and to ste, every run's row, its per-layer β (frozen at init, against the least-squares β of
the trained weight) and its flip rates per step and per evaluation interval
(examples/seed_stats.py: the summary and the plot with error bars). `--no-mvue` is the ablation
without MVUE; `--hf gpt2|llama` trains GPT2LMHeadModel / LlamaForCausalLM from a config built
here (nothing downloaded), sparsified by `s_ste.sparsify(..., include="ffn")`.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import io
import json
import math
import os
import platform
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
import common  # noqa: E402  (bench/common.py: results files naming device, versions, commit)
import seed_stats  # noqa: E402  (examples/seed_stats.py: --seeds summaries)

import s_ste  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # the bar is cosmetic
    def tqdm(it, **_):
        return it

# name -> (SparseLinear recipe or None for the dense model, fp8)
RECIPES = {"dense": (None, False), "ste": ("ste", False), "sr-ste": ("sr-ste", False), "s-ste": ("s-ste", False),
           "s-ste+fp8": ("s-ste", True)}
FFN_PATTERNS = ["blocks.*.mlp.fc", "blocks.*.mlp.proj"]
WARMUP_STEPS = 5  # not timed (allocator, cuBLAS/CUTLASS and autotuning warm-up)
ALL_PATTERNS = ["blocks.*.mlp.*", "blocks.*.attn.*"]


# ---------------------------------------------------------------- model

@dataclass
class GPTConfig:
    layers: int = 6
    d_model: int = 512
    heads: int = 8
    seq: int = 512
    vocab: int = 256


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.heads = cfg.heads

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(a.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A byte-level GPT whose output head is the transposed byte embedding (tied)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        for name, p in self.named_parameters():  # GPT-2 / nanoGPT initialisation
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * cfg.layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head: dense

    def loss(self, idx, targets):
        return lm_loss(self(idx), targets)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


class HFCausalLM(nn.Module):
    """A Hugging Face causal LM (`hf`) behind the GPT's interface: forward(idx) -> logits."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=idx, use_cache=False).logits

    def loss(self, idx, targets):
        return lm_loss(self(idx), targets)


def hf_model(cfg: GPTConfig, family: str) -> nn.Module:
    """GPT2LMHeadModel / LlamaForCausalLM of the GPT's size, from a config built here (nothing downloaded).

    No dropout (as the GPT), head tied to the byte embedding, the library's own initialisation.
    Llama's SwiGLU FFN has three matrices: its width is 8·d/3 (rounded to 64) so that the FFN
    holds as many weights as the GPT's two 4·d matrices.
    """
    try:
        import transformers
    except ImportError as err:
        raise SystemExit(f"--hf {family} needs transformers (python -m pip install transformers): {err}")
    if family == "gpt2":
        conf = transformers.GPT2Config(vocab_size=cfg.vocab, n_positions=cfg.seq, n_embd=cfg.d_model,
                                       n_layer=cfg.layers, n_head=cfg.heads, n_inner=4 * cfg.d_model,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
        return transformers.GPT2LMHeadModel(conf)
    if family == "llama":
        width = 64 * max(1, round(8 * cfg.d_model / 3 / 64))
        conf = transformers.LlamaConfig(vocab_size=cfg.vocab, hidden_size=cfg.d_model, intermediate_size=width,
                                        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                                        num_key_value_heads=cfg.heads, max_position_embeddings=cfg.seq,
                                        tie_word_embeddings=True)
        return transformers.LlamaForCausalLM(conf)
    raise ValueError(f"hf_model: family must be 'gpt2' or 'llama', got {family!r}")


def build_model(cfg: GPTConfig, recipe: str, seed: int, device, all_linears: bool = False, mvue: bool = True,
                hf: str | None = None) -> nn.Module:
    """The GPT (or the HF model class `hf`) with `recipe`'s sparse layers; the same initial weights for every recipe."""
    torch.manual_seed(seed)
    model = GPT(cfg) if hf is None else hf_model(cfg, hf)
    model = model.to(device)
    sparse, fp8 = RECIPES[recipe]
    if sparse is not None:
        if hf is None:
            include, skip = (ALL_PATTERNS if all_linears else FFN_PATTERNS), ()
        else:  # the library's per-family FFN patterns; the (tied) head stays dense either way
            include, skip = (None if all_linears else "ffn"), ("lm_head",)
        s_ste.sparsify(model, recipe=sparse, fp8=fp8, include=include, skip=skip, mvue=mvue, seed=seed)
        for m in sparse_layers(model):
            if m.recipe == "s-ste":
                m.reset_scale()  # β once, after initialisation, then frozen
    return model if hf is None else HFCausalLM(model)


def sparse_layers(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, s_ste.SparseLinear)]


# ---------------------------------------------------------------- data

def stdlib_files() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    skip = ("site-packages", "dist-packages")
    return sorted(p for p in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
                  if not any(s in p.split(os.sep) for s in skip))


def load_corpus(seed: int, val_fraction: float = 0.1, max_files: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train bytes, validation bytes, files) from the stdlib sources, split by file with `seed`."""
    files = stdlib_files()
    random.Random(seed).shuffle(files)
    if max_files:
        files = files[:max_files]
    n_val = max(1, int(len(files) * val_fraction))

    def read(paths):
        chunks = []
        for p in paths:
            with open(p, "rb") as f:
                chunks.append(f.read())
        return torch.frombuffer(bytearray(b"\n".join(chunks)), dtype=torch.uint8)

    return read(files[n_val:]), read(files[:n_val]), len(files)


def windows(data: torch.Tensor, starts: torch.Tensor, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = starts[:, None] + torch.arange(seq + 1)
    chunk = data[idx].long()
    return chunk[:, :-1], chunk[:, 1:]


# ---------------------------------------------------------------- training

@dataclass
class Args:
    steps: int
    batch: int
    lr: float
    warmup: int
    eval_every: int
    eval_batches: int
    seed: int
    all_linears: bool
    compile: bool
    mvue: bool = True
    hf: str | None = None


def lr_at(step: int, a: Args) -> float:
    """Linear warm-up, then cosine decay to lr/10 at the last step (nanoGPT)."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    progress = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr / 10 + 0.5 * (a.lr - a.lr / 10) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, a: Args, device) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


def grouped_weight(m: nn.Module) -> torch.Tensor:
    """The layer's [out, in] weight, 2:4 groups along the last dim (s_ste.hf.SparseConv1D stores [in, out])."""
    return m._weight_oi().detach()


def layer_mask(m: nn.Module) -> torch.Tensor:
    """The 2:4 mask the layer's recipe applies now (S-STE's soft threshold keeps the same top-2 as STE)."""
    return s_ste.hard_threshold_24(grouped_weight(m).contiguous())[1]


class FlipMeter:
    """Fraction of the 2:4 mask bits of all sparse weights that changed since the last call
    (`step`: per optimizer step) and since the last `interval` call (over an evaluation interval)."""

    def __init__(self, layers):
        self.layers = layers
        self.total = sum(m.weight.numel() for m in layers)
        self.prev = self.masks()
        self.anchor = self.prev

    def masks(self):
        with torch.no_grad():
            return [layer_mask(m) for m in self.layers]

    def step(self) -> torch.Tensor | None:
        if not self.layers:
            return None
        now = self.masks()
        flips = sum((a != b).sum() for a, b in zip(now, self.prev))
        self.prev = now
        return flips.float() / self.total  # a device tensor: read at the log points only

    def interval(self) -> float | None:
        if not self.layers:
            return None
        flips = sum((a != b).sum() for a, b in zip(self.prev, self.anchor))
        self.anchor = self.prev
        return (flips.float() / self.total).item()


@torch.no_grad()
def layer_report(layers) -> list[dict]:
    """Per sparse layer: its β (S-STE: frozen at init), the least-squares β of the weight now
    (<w, S(w)> / <S(w), S(w)>, what reset_scale would set), and |ŵ| / |w| with the frozen β."""
    out = []
    for m in layers:
        w = grouped_weight(m).float().contiguous()
        pruned = s_ste.soft_threshold_24(w)[0]
        row = {"name": m.name, "beta": float(m.scale) if m.recipe == "s-ste" else None,
               "beta_lsq": float(s_ste.scale_factor(w))}
        if m.recipe == "s-ste":
            row["norm_ratio"] = float((m.scale * pruned).norm() / w.norm())
        out.append(row)
    return out


@torch.no_grad()
def evaluate(model, val: torch.Tensor, cfg: GPTConfig, a: Args, device, rank: int, world: int, autocast) -> float:
    model.eval()
    n = a.eval_batches * a.batch
    starts = torch.linspace(0, len(val) - cfg.seq - 2, n).long()[rank::world]
    total = torch.zeros((), device=device)
    for i in range(0, len(starts), a.batch // world or 1):
        x, y = windows(val, starts[i:i + max(1, a.batch // world)], cfg.seq)
        with autocast():
            total += model.loss(x.to(device), y.to(device)) * len(x)
    count = torch.tensor(float(len(starts)), device=device)
    if world > 1:
        dist.all_reduce(total)
        dist.all_reduce(count)
    model.train()
    return (total / count).item()


def train(recipe: str, cfg: GPTConfig, a: Args, train_data, val_data, device, rank: int, world: int) -> dict:
    model = build_model(cfg, recipe, a.seed, device, a.all_linears, a.mvue, a.hf)
    layers = sparse_layers(model)
    layers_at_init = layer_report(layers)
    opt = make_optimizer(model, a, device)
    flips = FlipMeter(layers)
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if a.compile:
        net = torch.compile(net)
    use_bf16 = device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16)

    gen = torch.Generator().manual_seed(a.seed + 1)  # the same data order for every recipe
    local = a.batch // world
    curve = {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "flip_step": [], "flip_rate": [],
             "interval_flip_rate": []}
    pending_loss, pending_flip = [], []
    # Step time: CUDA-synchronised wall clock from the end of the warm-up steps, paused for evaluation.
    warm = min(WARMUP_STEPS, a.steps - 1)
    step_time, timed_steps, t0 = 0.0, 0, None

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    bar = tqdm(range(a.steps), desc=f"{recipe:>9}", disable=rank != 0, dynamic_ncols=True)
    for step in bar:
        if step == warm:
            sync()
            t0 = time.perf_counter()
        starts = torch.randint(0, len(train_data) - cfg.seq - 2, (a.batch,), generator=gen)
        x, y = windows(train_data, starts[rank * local:(rank + 1) * local], cfg.seq)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, a)
        with autocast():
            logits = net(x)  # through the DDP / compile wrappers
        loss = lm_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        timed_steps += step >= warm
        pending_loss.append((step, loss.detach()))
        rate = flips.step()
        if rate is not None:
            pending_flip.append((step, rate))
        last = step == a.steps - 1
        if (step + 1) % a.eval_every == 0 or last:
            if t0 is not None:
                sync()
                step_time += time.perf_counter() - t0
            for s, v in pending_loss:
                curve["step"].append(s)
                curve["train_loss"].append(v.item())
            for s, v in pending_flip:
                curve["flip_step"].append(s)
                curve["flip_rate"].append(v.item())
            pending_loss, pending_flip = [], []
            interval = flips.interval()
            if interval is not None:
                curve["interval_flip_rate"].append(interval)  # mask bits changed since the previous evaluation
            val = evaluate(model, val_data, cfg, a, device, rank, world, autocast)
            curve["val_step"].append(step + 1)
            curve["val_loss"].append(val)
            if rank == 0 and hasattr(bar, "set_postfix"):
                bar.set_postfix(train=f"{curve['train_loss'][-1]:.3f}", val=f"{val:.3f}")
            if t0 is not None:
                t0 = time.perf_counter()  # (evaluate ended with a host read: the device is idle)
    final = curve["val_loss"][-1]
    ms = 1e3 * step_time / max(1, timed_steps)
    flip_rates = curve["flip_rate"]
    return {
        "recipe": recipe, "seed": a.seed, "mvue": a.mvue, "model": a.hf or "gpt",
        "steps": a.steps, "final_val_loss": final, "bits_per_byte": final / math.log(2),
        "flip_rate": (sum(flip_rates) / len(flip_rates)) if flip_rates else None,
        "flip_rate_last": (sum(flip_rates[-10:]) / len(flip_rates[-10:])) if flip_rates else None,
        "ms_per_step": ms, "tokens_per_s": a.batch * cfg.seq / (ms / 1e3) if ms else None,
        "params": sum(p.numel() for p in model.parameters()), "sparse_layers": len(layers),
        "ranks": world, "curve": curve,
        "layers": [{"name": i["name"], "beta": i["beta"], "beta_lsq_init": i["beta_lsq"],
                    "beta_lsq_final": f["beta_lsq"], "norm_ratio_init": i.get("norm_ratio"),
                    "norm_ratio_final": f.get("norm_ratio")}
                   for i, f in zip(layers_at_init, layer_report(layers))],
    }


# ---------------------------------------------------------------- results

COLUMNS = ["recipe", "steps", "final_val_loss", "bits_per_byte", "flip_rate", "flip_rate_last", "ms_per_step",
           "tokens_per_s"]


def plot(rows: list[dict], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (python -m pip install matplotlib)")
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for r in rows:
        c = r["curve"]
        color = f"C{list(RECIPES).index(r['recipe'])}"  # the same colour per recipe in every panel
        axes[0].plot(c["val_step"], c["val_loss"], marker="o", ms=3, label=r["recipe"], color=color)
        k = max(1, len(c["train_loss"]) // 200)  # smooth the train curve over k steps
        sm = [sum(c["train_loss"][i:i + k]) / len(c["train_loss"][i:i + k]) for i in range(0, len(c["train_loss"]), k)]
        axes[1].plot(c["step"][::k], sm, label=r["recipe"], color=color)
        if c["flip_rate"]:
            axes[2].plot(c["flip_step"], c["flip_rate"], label=r["recipe"], lw=0.8, color=color)
    axes[0].set(title="validation loss (nats/byte)", xlabel="step")
    axes[1].set(title="training loss", xlabel="step")
    axes[2].set(title="mask flip rate per optimizer step", xlabel="step", yscale="log")
    for ax in axes:
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def config_notes(rows: list[dict], cfg: GPTConfig, a: Args, files: int, n_train: int, n_val: int) -> list[str]:
    """Model, data and optimizer paragraphs of the results files."""
    sparse_note = "FFN linears" if not a.all_linears else "all block linears"
    model = {None: "GPT (this file)", "gpt2": "transformers GPT2LMHeadModel", "llama": "transformers LlamaForCausalLM"}
    mvue = "MVUE on the output gradient of the weight-gradient product" if a.mvue else "no MVUE (mvue=False)"
    return [
        f"Model: {model[a.hf]}, {cfg.layers} layers, d_model {cfg.d_model}, {cfg.heads} heads, context {cfg.seq}, "
        f"vocabulary 256 (bytes), tied head; {rows[0]['params']:,} parameters ({rows[0]['params'] / 1e6:.2f} M). "
        f"Sparse recipes: 2:4 on the {sparse_note}, {mvue}.",
        f"Data: {files} stdlib .py files split by file (seed {a.seed}): {n_train / 1e6:.1f} MB train, "
        f"{n_val / 1e6:.1f} MB validation; {a.steps} steps of {a.batch} × {cfg.seq} bytes "
        f"({a.steps * a.batch * cfg.seq / 1e6:.2f} M training bytes); validation on {a.eval_batches * a.batch} "
        "fixed windows.",
        f"Optimizer: AdamW β=(0.9, 0.95), weight decay 0.1 (matrices), lr {a.lr} with {a.warmup} warm-up steps and "
        "cosine decay to lr/10, grad clip 1.0; bf16 autocast on CUDA.",
    ]


def notes(rows: list[dict], cfg: GPTConfig, a: Args, files: int, n_train: int, n_val: int, png: str | None) -> str:
    by = {r["recipe"]: r["final_val_loss"] for r in rows}
    order = " < ".join(sorted(by, key=by.get))
    paper = "dense ≤ s-ste < sr-ste ≤ ste"
    lines = config_notes(rows, cfg, a, files, n_train, n_val) + [
        f"Measured order of final validation loss: {order} (the paper expects {paper}).",
        "flip_rate: mean over all optimizer steps of the fraction of the sparse weights' 2:4 mask bits that "
        "changed at that step; flip_rate_last: the mean over the last 10 steps. ms_per_step: CUDA-synchronised "
        "wall time per training step (forward, backward, clip, AdamW, flip-rate bookkeeping), evaluation and the "
        f"first {WARMUP_STEPS} steps excluded.",
    ]
    if png:
        lines.append(f"\n![loss curves and flip rates]({png})")
    return "\n\n".join(lines)


def code_commit() -> str:
    """The commit of this checkout (+dirty with uncommitted changes to tracked files)."""
    try:
        git = ["git", "-C", ROOT]
        commit = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """The CPU model, its core count and torch's thread count; the GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, {gpu}"


def seed_notes(runs: list[dict], recipes: list[str], cfg: GPTConfig, a: Args, seeds: list[int], corpus: tuple,
               wall_s: float, png: str | None, machine_line: str | None = None) -> str:
    summary = seed_stats.summarize(runs, recipes)
    order = " < ".join(r["recipe"] for r in sorted(summary, key=lambda r: r["final_val_loss"]))
    lines = config_notes(runs, cfg, a, *corpus) + [
        f"Seeds: {seeds} (each seed sets the initial weights, the data order and the MVUE draws; every recipe of a "
        f"seed starts from the same weights and sees the same batches; the train/validation split is that of "
        f"split seed {a.seed}). se: standard error of the mean over seeds (sample std / √n). Δ (paired): mean over "
        "seeds of the per-seed difference of final validation loss to dense / to ste, ± its standard error.",
        f"Machine: {machine_line or machine()}; torch {torch.__version__}; wall time of the whole run {wall_s / 60:.1f} min "
        f"({len(runs)} training runs).",
        f"Order of the mean final validation loss: {order} (the paper expects dense ≤ s-ste < sr-ste ≤ ste).",
        "## Final validation loss per recipe and seed\n\n" + seed_stats.per_seed_table(runs, recipes),
        "flip rate / step: mean over all optimizer steps (and seeds) of the fraction of the sparse weights' 2:4 mask "
        "bits that changed at that step. ms / step: wall time per training step, evaluation and the first "
        f"{WARMUP_STEPS} steps excluded (the machine may be shared: a rough figure).",
    ]
    if png:
        lines.append(f"\n![final loss with error bars, mean curves, flip rates]({png})")
    return "\n\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="a CPU-sized smoke run (~1 minute for all five recipes)")
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated subset of {list(RECIPES)}")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int, help="global batch (sequences)")
    p.add_argument("--layers", type=int)
    p.add_argument("--d-model", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--seq", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-batches", type=int)
    p.add_argument("--max-files", type=int, help="use only this many stdlib files")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--all-linears", action="store_true", help="sparsify the attention projections too")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument("--results-dir", default=None, help="default bench/results (--tiny: a temp dir)")
    p.add_argument("--seeds", type=int, default=1,
                   help="train every recipe with seeds --seed, --seed+1, ...: mean ± standard error per recipe")
    p.add_argument("--name", default=None,
                   help="results file stem (default: pretrain; with --seeds > 1: pretrain_seeds)")
    p.add_argument("--no-mvue", dest="mvue", action="store_false",
                   help="ablation: sparse layers without MVUE on the output gradient")
    p.add_argument("--hf", choices=["gpt2", "llama"], default=None,
                   help="pre-train the Hugging Face model class of the same size (tiny config built here)")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the train/validation split (default --seed): runs of other seeds split alike")
    p.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                   help="train nothing: combine results files of the same configuration (seed runs made by "
                        "separate processes) into <results-dir>/<name>.{md,json,png}")
    p.add_argument("--wall-s", type=float, default=None, help="--merge: the wall time to report (seconds)")
    args = p.parse_args()
    if args.merge:
        merge(args.merge, args.results_dir or common.RESULTS, args.name or "pretrain_seeds", args.wall_s)
        return
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")

    if args.tiny:
        cfg = GPTConfig(layers=2, d_model=64, heads=4, seq=64)
        defaults = dict(steps=40, batch=16, lr=3e-3, warmup=5, eval_every=20, eval_batches=2, max_files=300)
    else:
        cfg = GPTConfig()
        defaults = dict(steps=600, batch=32, lr=1e-3, warmup=60, eval_every=100, eval_batches=8, max_files=None)
    for k in ("layers", "d_model", "heads", "seq"):
        if getattr(args, k) is not None:
            setattr(cfg, k, getattr(args, k))
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipes {unknown}; choose from {list(RECIPES)}")

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if args.batch % world:
            p.error(f"--batch {args.batch} must be a multiple of the {world} ranks")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    out_dir = args.results_dir or (tempfile.mkdtemp(prefix="pretrain_tiny_") if args.tiny else common.RESULTS)
    if args.tiny and os.path.realpath(out_dir) == os.path.realpath(common.RESULTS):
        p.error("--tiny never writes into bench/results: pick another --results-dir")
    common.RESULTS = out_dir

    split_seed = args.seed if args.split_seed is None else args.split_seed
    train_data, val_data, files = load_corpus(split_seed, max_files=args.max_files)
    a = Args(args.steps, args.batch, args.lr, args.warmup, args.eval_every, args.eval_batches, split_seed,
             args.all_linears, args.compile, args.mvue, args.hf)
    if rank == 0:
        print(f"corpus: {files} files, {len(train_data) / 1e6:.1f} MB train / {len(val_data) / 1e6:.1f} MB val; "
              f"device {device}, {world} rank(s)", flush=True)
    name = args.name or ("pretrain" if args.seeds == 1 else "pretrain_seeds")
    what = {None: "byte-level GPT", "gpt2": "HF GPT-2", "llama": "HF Llama"}[args.hf]
    corpus = (files, len(train_data), len(val_data))
    t_start = time.perf_counter()
    seeds = [args.seed + i for i in range(args.seeds)]  # (a.seed: the split's; each run gets its own)
    rows = []
    for seed in seeds:  # seed-major: a run cut short still holds whole seeds
        for recipe in recipes:
            rows.append(train(recipe, cfg, dataclasses.replace(a, seed=seed), train_data, val_data, device, rank,
                              world))
            if rank != 0:
                continue
            # After every run: a run cut short by a time limit still leaves its results.
            done = len(rows) == len(recipes) * len(seeds)
            title = (f"S-STE pre-training comparison: {what} on the Python stdlib"
                     + (f", {len(seeds)} seeds" if len(seeds) > 1 else "")
                     + (" [TINY smoke run]" if args.tiny else "") + ("" if done else " [PARTIAL]"))
            if len(seeds) == 1:
                write_all(rows, title, out_dir, name, notes_args=(cfg, a, *corpus), quiet=not done)
            else:
                write_seeds(rows, recipes, title, out_dir, name, cfg, a, seeds, corpus,
                            time.perf_counter() - t_start, quiet=not done)
    if world > 1:
        dist.barrier()  # every rank done with its collectives before the group goes
        dist.destroy_process_group()
        # Skip the interpreter's teardown: on gloo, c10d threads destroyed there now and then
        # abort the process ("terminate called without an active exception") after all the
        # work is done and written, which torchrun would report as a failed run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def write_all(rows: list[dict], title: str, out_dir: str, name: str, notes_args: tuple, quiet: bool) -> None:
    """<name>.md/json (common.write_results), <name>_curves.json and <name>.png in out_dir (one seed)."""
    os.makedirs(out_dir, exist_ok=True)
    png = plot(rows, os.path.join(out_dir, f"{name}.png"))
    table = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    text = notes(rows, *notes_args, f"{name}.png" if png else None)
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        common.write_results(name, title, COLUMNS, table, notes=text)
    with open(os.path.join(out_dir, f"{name}_curves.json"), "w") as f:
        json.dump({r["recipe"]: r["curve"] for r in rows}, f)
    if not quiet:
        print(f"wrote {out_dir}/{name}.md, {name}.json, {name}_curves.json" + (f", {name}.png" if png else ""))


def load_runs(path: str) -> tuple[list[dict], dict | None]:
    """(runs with their curves, the config or None) of a results JSON: --seeds format or one-seed format."""
    with open(path) as f:
        data = json.load(f)
    with open(path[:-len(".json")] + "_curves.json") as f:
        curves = json.load(f)
    if isinstance(data, dict):
        return [{**r, "curve": curves[f"{r['recipe']}/{r['seed']}"]} for r in data["runs"]], data["config"]
    return [{**r, "curve": curves[r["recipe"]]} for r in data], None


def merge(paths: list[str], out_dir: str, name: str, wall_s: float | None) -> None:
    """One --seeds report from results files of the same configuration (the first must be in --seeds format)."""
    runs, config = [], None
    for path in paths:
        part, conf = load_runs(path)
        config = config or conf
        runs += part
    if config is None:
        raise SystemExit("--merge: the first file must be a --seeds results file (it holds the configuration)")
    cfg = GPTConfig(**{f.name: config[f.name] for f in dataclasses.fields(GPTConfig)})
    a = Args(**{f.name: config[f.name] for f in dataclasses.fields(Args)})
    keys = {(r["recipe"], r["seed"]) for r in runs}
    bad = [r["recipe"] for r in runs if (r["steps"], r["params"], r["model"]) != (a.steps, config["params"],
                                                                                   a.hf or "gpt")]
    if bad or len(keys) != len(runs):
        raise SystemExit(f"--merge: runs of another configuration {bad} or repeated (recipe, seed) pairs")
    seeds = sorted({r["seed"] for r in runs})
    recipes = [r for r in RECIPES if any(x["recipe"] == r for x in runs)]
    what = {None: "byte-level GPT", "gpt2": "HF GPT-2", "llama": "HF Llama"}[a.hf]
    done = all((r, s) in keys for r in recipes for s in seeds)
    title = f"S-STE pre-training comparison: {what} on the Python stdlib, {len(seeds)} seeds" + (
        "" if done else " [PARTIAL]")
    corpus = (config["files"], config["train_bytes"], config["val_bytes"])
    write_seeds(runs, recipes, title, out_dir, name, cfg, a, seeds, corpus,
                wall_s if wall_s is not None else config["wall_s"], quiet=False,
                merged=[os.path.basename(p) for p in paths], machine_line=config["machine"])


def write_seeds(runs: list[dict], recipes: list[str], title: str, out_dir: str, name: str, cfg: GPTConfig, a: Args,
                seeds: list[int], corpus: tuple, wall_s: float, quiet: bool, merged: list[str] | None = None,
                machine_line: str | None = None) -> None:
    """<name>.md (mean ± se table, configuration, per-seed table), <name>.json ({summary, runs, config,
    environment}), <name>_curves.json ("recipe/seed" -> curves) and <name>.png (error bars) in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    png = seed_stats.plot(runs, recipes, os.path.join(out_dir, f"{name}.png"))
    summary = seed_stats.summarize(runs, recipes)
    text = seed_notes(runs, recipes, cfg, a, seeds, corpus, wall_s, f"{name}.png" if png else None, machine_line)
    env = common.environment()
    if env["commit"] == "unknown":  # a results dir outside the repository: name the code's commit
        env["commit"] = code_commit()
    md = (f"# {title}\n\n{env['device']}, torch {env['torch']}, CUDA {env['cuda']}, commit {env['commit']}, "
          f"{env['date']}\n\n{seed_stats.markdown_table(summary)}\n"
          f"{text}\n")
    if merged:
        md += (f"\nMerged (--merge) from {', '.join(merged)}: seed runs made by separate processes running at "
               "the same time.\n")
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(md)
    config = {**dataclasses.asdict(cfg), **dataclasses.asdict(a), "seeds": seeds, "files": corpus[0],
              "train_bytes": corpus[1], "val_bytes": corpus[2], "params": runs[0]["params"],
              "machine": machine_line or machine(), "wall_s": wall_s, "merged": merged}
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({"summary": summary, "recipes": recipes, "config": config, "environment": env,
                   "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs]}, f, indent=1)
    with open(os.path.join(out_dir, f"{name}_curves.json"), "w") as f:
        json.dump({f"{r['recipe']}/{r['seed']}": r["curve"] for r in runs}, f)
    if not quiet:
        print(md)
        print(f"wrote {out_dir}/{name}.md, {name}.json, {name}_curves.json" + (f", {name}.png" if png else ""))


if __name__ == "__main__":
    main()
