"""cuSPARSELt as a Hopper user calls it from torch, tuned per shape: the baseline our GEMMs must beat.

torch exposes cuSPARSELt as raw ops: ``torch._cslt_compress(A)`` (A 2:4 along its rows) and
``torch._cslt_sparse_mm(compressed_A, dense_B, bias, alpha, out_dtype, transpose_result, alg_id,
split_k, split_k_mode)`` = A·B (``transpose_result=True`` writes (A·B)ᵀ row-major: with A = ŵ
[N, K] and B = xᵀ, y = x·ŵᵀ [M, N], the layout our GEMMs write), plus the library's own
search (``torch._C._cusparselt.mm_search`` -> (alg_id, split_k, split_k_mode, max_alg_id); the
older ``torch._cslt_sparse_mm_search`` -> alg_id only). ``tune`` runs that search and then,
where asked, the sweep alg_id 0.. up to the first error × split_k {1, 2, 4, 8} × split_k_mode
{1, 2}, each configuration checked against the dense reference before it may win.

The signatures are feature-detected (``Api.from_torch``), never compared by version:
- torch 2.11.0 (the device's) and 2.14.1 (here), read from the schemas in their wheels'
  libtorch_cpu.so: the same three ops, ``_cslt_sparse_mm(..., int alg_id=0, int split_k=1,
  int split_k_mode=-1)``, and ``mm_search`` in both (libtorch_python's binding returns four
  int64). They differ in their fake (meta) kernels only: 2.11's asserts that an 8-bit dense_B
  is transposed (non-contiguous) and refuses a float32 out_dtype for FP8, 2.14's drops both;
  we always pass xᵀ as a view and bf16 out, which both take. 2.14's CUDA kernel also accepts
  an FP8 out_dtype for FP8 inputs (unused here).
- earlier releases had ``bool split_k_one_kernel=True`` in place of split_k_mode (and mm_search
  returned that bool third), and before that neither split_k argument: ``Api`` maps a mode onto
  whichever the schema has, and sweeps split_k = 1 only when there is none.
- split_k_mode is cusparseLtSplitKMode_t (1 = one kernel, 2 = two kernels); torch sets it only
  when split_k != 1 and split_k_mode > 0 (−1: the library's default).
- alpha: a 1-element tensor makes torch call ``.item()`` (a host sync) on every call; a float32
  vector of length N (= rows of A) turns on cuSPARSELt's per-row scaling, read on the device
  (``alpha_vector``).

The library's versions: ``versions()`` gives the one torch was built against and the one
loaded in this process (``cusparseLtGetProperty`` through ctypes on the libcusparseLt that
torch loaded, found in /proc/self/maps; it needs no GPU).
"""
from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

SPLIT_KS = (1, 2, 4, 8)
ONE_KERNEL, TWO_KERNELS = 1, 2            # cusparseLtSplitKMode_t
SPLIT_K_MODES = (ONE_KERNEL, TWO_KERNELS)
LIBRARY_DEFAULT_MODE = -1                 # torch's default: leave the library's choice
ALG_CAP = 64                              # the sweep stops here even without an error
LIB_NAME = "libcusparseLt"


@dataclass(frozen=True)
class Config:
    """One cuSPARSELt algorithm configuration (what _cslt_sparse_mm takes besides operands)."""
    alg_id: int = 0
    split_k: int = 1
    split_k_mode: int = LIBRARY_DEFAULT_MODE

    def label(self) -> str:
        mode = {ONE_KERNEL: "1 kernel", TWO_KERNELS: "2 kernels"}.get(self.split_k_mode, "default")
        return f"alg {self.alg_id}" + (f", split_k {self.split_k} ({mode})" if self.split_k != 1 else "")


DEFAULT = Config()  # what torch picks when a user passes nothing (and what to_sparse_semi_structured uses)


class Api:
    """The torch entry points of cuSPARSELt, with the argument names this torch's schema has."""

    def __init__(self, arg_names, compress: Callable, sparse_mm: Callable, mm_search: Callable | None = None,
                 alg_search: Callable | None = None, fake: bool = False) -> None:
        names = set(arg_names)
        self.has_split_k = "split_k" in names
        self.mode_arg = next((a for a in ("split_k_mode", "split_k_one_kernel") if a in names), None)
        self.compress, self.sparse_mm = compress, sparse_mm
        self.mm_search, self.alg_search = mm_search, alg_search
        self.fake = fake  # a CPU stand-in (dry runs): its times are FAKE

    @classmethod
    def from_torch(cls) -> "Api":
        names = [a.name for a in torch.ops.aten._cslt_sparse_mm.default._schema.arguments]
        mm_search = getattr(getattr(torch._C, "_cusparselt", None), "mm_search", None)
        return cls(names, torch._cslt_compress, torch._cslt_sparse_mm, mm_search,
                   getattr(torch, "_cslt_sparse_mm_search", None))

    def split_ks(self) -> tuple[int, ...]:
        return SPLIT_KS if self.has_split_k else (1,)

    def config_kwargs(self, cfg: Config) -> dict:
        """_cslt_sparse_mm's keyword arguments for cfg on this torch."""
        kw = {"alg_id": cfg.alg_id}
        if cfg.split_k != 1:
            if not self.has_split_k:
                raise ValueError("this torch's _cslt_sparse_mm has no split_k argument")
            kw["split_k"] = cfg.split_k
            if cfg.split_k_mode > 0 and self.mode_arg == "split_k_mode":
                kw["split_k_mode"] = cfg.split_k_mode
            elif cfg.split_k_mode > 0 and self.mode_arg == "split_k_one_kernel":
                kw["split_k_one_kernel"] = cfg.split_k_mode == ONE_KERNEL
        return kw

    def mm(self, compressed: torch.Tensor, dense_b: torch.Tensor, cfg: Config = DEFAULT,
           alpha: torch.Tensor | None = None, out_dtype: torch.dtype | None = None,
           transpose_result: bool = True) -> torch.Tensor:
        return self.sparse_mm(compressed, dense_b, bias=None, alpha=alpha, out_dtype=out_dtype,
                              transpose_result=transpose_result, **self.config_kwargs(cfg))

    def search(self, compressed: torch.Tensor, dense_b: torch.Tensor, alpha: torch.Tensor | None = None,
               out_dtype: torch.dtype | None = None, transpose_result: bool = True) -> tuple[Config, int | None]:
        """(the configuration cuSPARSELt's own search picks, its max alg id if told)."""
        if self.mm_search is not None:
            alg, split_k, mode, max_alg = self.mm_search(compressed, dense_b, None, alpha, out_dtype, transpose_result)
            if self.mode_arg == "split_k_one_kernel":  # (that era's search returned the bool)
                mode = ONE_KERNEL if mode else TWO_KERNELS
            split_k = int(split_k) if self.has_split_k else 1
            return Config(int(alg), split_k, int(mode) if split_k != 1 else LIBRARY_DEFAULT_MODE), int(max_alg)
        if self.alg_search is None:
            raise RuntimeError("this torch has neither torch._C._cusparselt.mm_search nor torch._cslt_sparse_mm_search")
        return Config(int(self.alg_search(compressed, dense_b, None, alpha, out_dtype, transpose_result))), None


def emulated() -> Api:
    """cuSPARSELt's entry points computed densely with torch ops, on any device: what the dry runs
    call instead of the library (CPU). Its outputs are right (A stays dense: "compressed" is a
    copy); its times are FAKE."""
    def compress(a: torch.Tensor) -> torch.Tensor:
        return a.clone()

    def sparse_mm(a, b, bias=None, alpha=None, out_dtype=None, transpose_result=False, alg_id=0, split_k=1,
                  split_k_mode=LIBRARY_DEFAULT_MODE):
        d = a.float() @ b.float()
        if alpha is not None:
            d = d * (alpha.float()[:, None] if alpha.numel() > 1 else alpha.float().reshape(()))
        if bias is not None:
            d = d + bias.float()[:, None]
        d = d.to(out_dtype or b.dtype)
        return d.t().contiguous() if transpose_result else d

    def mm_search(a, b, bias, alpha, out_dtype, transpose_result):
        return DEFAULT.alg_id, DEFAULT.split_k, DEFAULT.split_k_mode, 0

    names = [a.name for a in torch.ops.aten._cslt_sparse_mm.default._schema.arguments]
    return Api(names, compress, sparse_mm, mm_search, fake=True)


def alpha_vector(alpha: torch.Tensor, n: int) -> torch.Tensor:
    """A 0-d/1-element float32 alpha as the float32 vector of length n that cuSPARSELt reads on
    the device (per-row scaling), made on the device: no host sync, unlike a 1-element alpha."""
    return alpha.reshape(1).to(torch.float32).expand(n).contiguous()


# ---------------------------------------------------------------- the tuning

@dataclass
class Trial:
    """One configuration tried: ok (checked, timed), wrong (check failed), raised (library error)."""
    config: Config
    status: str
    us: float | None = None
    rel: float | None = None
    error: str = ""
    source: str = "sweep"   # "search", "default" or "sweep"


@dataclass
class Tuning:
    """What tune found: the winner (None if nothing passed) and every trial, in order."""
    plan: str                          # "search" or "search+sweep"
    trials: list[Trial] = field(default_factory=list)
    stop: str = ""                     # why the sweep ended
    max_alg_id: int | None = None
    search_error: str = ""

    @property
    def best(self) -> Trial | None:
        ok = [t for t in self.trials if t.status == "ok"]
        return min(ok, key=lambda t: t.us) if ok else None

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.trials)

    def summary(self) -> str:
        """One line for the table: the plan, what it tried and how it ended."""
        parts = [f"{len(self.trials)} configs: {self.count('ok')} ok, {self.count('wrong')} wrong, "
                 f"{self.count('raised')} raised"]
        if self.stop:
            parts.append(self.stop)
        if self.search_error:
            parts.append(f"search raised: {self.search_error}")
        best = self.best
        if best is not None:
            parts.append(f"best from {best.source}")
        return f"{self.plan} ({'; '.join(parts)})"


def short_error(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:120] if lines else ''}"


def tune(search: Callable[[], tuple[Config, int | None]], run: Callable[[Config], object],
         check: Callable[[object], tuple[bool, float]], timer: Callable[[Config], float], *, full: bool,
         split_ks=SPLIT_KS, budget_s: float = math.inf, clock: Callable[[], float] = time.perf_counter,
         alg_cap: int = ALG_CAP) -> Tuning:
    """Search, then (full) sweep, and keep the fastest configuration whose output checks.

    search() -> (config, max alg id or None); run(cfg) -> output (may raise); check(output) ->
    (ok, relative error); timer(cfg) -> µs (the same timer for every configuration). The sweep:
    alg_id 0, 1, ... at split_k 1 until the first alg that raises (or max_alg_id / alg_cap);
    then split_k > 1 × both modes for every alg found, fastest alg first; a configuration
    already tried is not tried again. The sweep stops once budget_s (by clock) is spent; the
    search's and the default's trials always run.
    """
    out = Tuning(plan="search+sweep" if full else "search")
    tried: dict[Config, Trial] = {}

    def attempt(cfg: Config, source: str) -> Trial:
        if cfg in tried:
            return tried[cfg]
        trial = Trial(cfg, "raised", source=source)
        try:
            y = run(cfg)
            ok, rel = check(y)
            del y
            trial.rel = rel
            if not ok:
                trial.status = "wrong"
            else:
                trial.us, trial.status = timer(cfg), "ok"
        except torch.cuda.OutOfMemoryError:
            raise  # not the configuration's fault: the caller reports the shape
        except Exception as e:  # an algorithm this shape or library lacks
            trial.error = short_error(e)
        tried[cfg] = trial
        out.trials.append(trial)
        return trial

    try:
        found, out.max_alg_id = search()
        attempt(found, "search")
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as e:
        out.search_error = short_error(e)
    attempt(DEFAULT, "default")
    if not full:
        return out
    start = clock()

    def over_budget() -> bool:
        if clock() - start > budget_s:
            out.stop = f"cut by the {budget_s:g} s budget"
            return True
        return False

    last = alg_cap if out.max_alg_id is None else min(alg_cap, out.max_alg_id)
    algs: list[Trial] = []
    for alg in range(last + 1):
        if over_budget():
            return out
        trial = attempt(Config(alg), "sweep")
        if trial.status == "raised":
            out.stop = f"alg {alg} raised (the first error)"
            break
        algs.append(trial)
    else:
        out.stop = f"alg cap {last} reached" + (" (max_alg_id)" if last == out.max_alg_id else "")
    algs.sort(key=lambda t: (t.us is None, t.us or 0.0))  # the fastest algorithms get split-K first
    for base in algs:
        for split_k in split_ks:
            for mode in SPLIT_K_MODES if split_k != 1 else ():
                if over_budget():
                    return out
                attempt(Config(base.config.alg_id, split_k, mode), "sweep")
    return out


# ---------------------------------------------------------------- versions

def format_version(v: int | None) -> str | None:
    """CUSPARSELT_VERSION (major·1000 + minor·100 + patch, e.g. 801) as "0.8.1"."""
    return None if v is None else f"{v // 1000}.{v % 1000 // 100}.{v % 100}"


def loaded_library() -> tuple[str | None, str]:
    """(path of the libcusparseLt this process has mapped, or the nvidia-cusparselt package's
    if none is mapped yet; how it was found)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.strip() else ""
                if LIB_NAME in os.path.basename(path):
                    return path, "mapped in this process"
    except OSError:
        pass
    spec = importlib.util.find_spec("nvidia.cusparselt") if importlib.util.find_spec("nvidia") else None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib = os.path.join(folder, "lib")
        for name in sorted(os.listdir(lib)) if os.path.isdir(lib) else []:
            if name.startswith(LIB_NAME):
                return os.path.join(lib, name), "not mapped: the nvidia-cusparselt package's"
    return None, "not found"


def library_version(path: str) -> str:
    """"major.minor.patch" from cusparseLtGetProperty (libraryPropertyType 0, 1, 2; no GPU needed)."""
    lib = ctypes.CDLL(path)
    parts = []
    for prop in range(3):
        v = ctypes.c_int(-1)
        status = lib.cusparseLtGetProperty(ctypes.c_int(prop), ctypes.byref(v))
        if status != 0:
            raise RuntimeError(f"cusparseLtGetProperty({prop}) returned status {status}")
        parts.append(str(v.value))
    return ".".join(parts)


def versions() -> dict[str, str | None]:
    """The environment fields: cuSPARSELt as torch was built against it and as loaded here."""
    built = torch.backends.cusparselt.version() if hasattr(torch.backends, "cusparselt") else None
    path, how = loaded_library()
    if path is None:
        loaded = "unavailable (no libcusparseLt found)"
    else:
        try:
            loaded = library_version(path)
        except (OSError, AttributeError, RuntimeError) as e:
            loaded = f"unavailable ({short_error(e)})"
    return {"cusparselt_version_built": format_version(built), "cusparselt_version_loaded": loaded,
            "cusparselt_library": f"{path} ({how})" if path else how}
