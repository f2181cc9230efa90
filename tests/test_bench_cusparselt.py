"""bench/cusparselt.py on the CPU: the tuning (search, sweep, checks, budget) against a scripted
fake cuSPARSELt, the argument mapping for each torch signature, and the library versions."""
import importlib.metadata
import os
import sys
from types import SimpleNamespace

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import common  # noqa: E402
import cusparselt as cs  # noqa: E402
from cusparselt import Config  # noqa: E402

# _cslt_sparse_mm's schema as torch 2.11.0 and 2.14.1 register it (read from each wheel's
# libtorch_cpu.so: identical), and as an earlier release had it (split_k_one_kernel).
SCHEMA_2_11_AND_2_14 = ("aten::_cslt_sparse_mm(Tensor compressed_A, Tensor dense_B, Tensor? bias=None, Tensor? "
                        "alpha=None, ScalarType? out_dtype=None, bool transpose_result=False, int alg_id=0, "
                        "int split_k=1, int split_k_mode=-1) -> Tensor")
SCHEMA_ONE_KERNEL = ("aten::_cslt_sparse_mm(Tensor compressed_A, Tensor dense_B, Tensor? bias=None, Tensor? "
                     "alpha=None, ScalarType? out_dtype=None, bool transpose_result=False, int alg_id=0, "
                     "int split_k=1, bool split_k_one_kernel=True) -> Tensor")
SCHEMA_ALG_ONLY = ("aten::_cslt_sparse_mm(Tensor compressed_A, Tensor dense_B, Tensor? bias=None, Tensor? "
                   "alpha=None, ScalarType? out_dtype=None, bool transpose_result=False, int alg_id=0) -> Tensor")


def arg_names(schema: str) -> list[str]:
    return [a.name for a in torch._C.parse_schema(schema).arguments]


class Lib:
    """A scripted cuSPARSELt: algs 0..n_algs-1 exist, `wrong` algs return wrong numbers, `raising`
    configurations raise; time(cfg) is the timer's answer. Records what ran and what was timed."""

    def __init__(self, n_algs=4, wrong=(), raising=(), time=None, found=(Config(1), None)):
        self.n_algs, self.wrong, self.raising = n_algs, set(wrong), set(raising)
        self.time = time or (lambda c: 100.0 + c.alg_id + c.split_k + c.split_k_mode)
        self.found, self.ran, self.timed = found, [], []

    def search(self):
        if isinstance(self.found, Exception):
            raise self.found
        return self.found

    def run(self, cfg):
        self.ran.append(cfg)
        if cfg.alg_id >= self.n_algs or cfg in self.raising:
            raise RuntimeError(f"CUSPARSE_STATUS_INVALID_VALUE for {cfg}")
        return cfg

    def check(self, y):
        return (False, 0.7) if y.alg_id in self.wrong else (True, 1e-3)

    def timer(self, cfg):
        self.timed.append(cfg)
        return self.time(cfg)


def tune(lib, **kw):
    return cs.tune(lib.search, lib.run, lib.check, lib.timer, **kw)


def test_sweep_stops_at_the_first_failing_alg():
    lib = Lib(n_algs=4)
    t = tune(lib, full=True)
    algs_run = {c.alg_id for c in lib.ran}
    assert algs_run == {0, 1, 2, 3, 4} and Config(4) in lib.ran  # alg 4 raised: nothing beyond it
    assert "alg 4 raised (the first error)" in t.stop
    assert not any(c.alg_id == 4 and c.split_k != 1 for c in lib.ran)
    # every alg found gets every split_k × mode, once each
    swept = {c for c in lib.ran if c.split_k != 1}
    assert swept == {Config(a, s, m) for a in range(4) for s in (2, 4, 8) for m in (1, 2)}
    assert len(lib.ran) == len(set(lib.ran))


def test_a_configuration_whose_check_fails_is_never_timed_nor_chosen():
    fastest_but_wrong = Config(2, 4, 1)
    lib = Lib(n_algs=4, wrong={2}, time=lambda c: 1.0 if c == fastest_but_wrong else 100.0 + c.alg_id)
    t = tune(lib, full=True)
    assert t.best.config != fastest_but_wrong and t.best.config.alg_id != 2
    assert all(c.alg_id != 2 for c in lib.timed)
    wrong = [x for x in t.trials if x.config.alg_id == 2]
    assert wrong and all(x.status == "wrong" and x.us is None and x.rel == 0.7 for x in wrong)


def test_raised_and_wrong_are_told_apart_and_a_raising_split_k_does_not_stop_the_sweep():
    lib = Lib(n_algs=3, wrong={1}, raising={Config(0, 4, 2)})
    t = tune(lib, full=True)
    by_cfg = {x.config: x for x in t.trials}
    assert by_cfg[Config(0, 4, 2)].status == "raised" and "CUSPARSE_STATUS_INVALID_VALUE" in by_cfg[Config(0, 4, 2)].error
    assert by_cfg[Config(1)].status == "wrong" and not by_cfg[Config(1)].error
    assert by_cfg[Config(0, 8, 1)].status == "ok"  # tried after the raising one
    assert t.count("raised") == 2 and t.count("wrong") == 7  # alg 3 (the end) + (0, 4, 2); alg 1 × 7
    assert "2 raised" in t.summary() and "7 wrong" in t.summary()


def test_the_winner_and_its_configuration_are_recorded():
    lib = Lib(n_algs=4, time=lambda c: 50.0 if c == Config(3, 4, 1) else 100.0 + c.alg_id)
    t = tune(lib, full=True)
    assert (t.best.config, t.best.us, t.best.source, t.best.status) == (Config(3, 4, 1), 50.0, "sweep", "ok")
    assert t.plan == "search+sweep" and t.best.config.label() == "alg 3, split_k 4 (1 kernel)"
    assert "best from sweep" in t.summary()


def test_search_only_times_the_search_pick_and_the_default():
    lib = Lib(found=(Config(2, 2, cs.TWO_KERNELS), 9), time=lambda c: 10.0 if c.alg_id == 2 else 20.0)
    t = tune(lib, full=False)
    assert [(x.config, x.source) for x in t.trials] == [(Config(2, 2, 2), "search"), (Config(), "default")]
    assert t.best.config == Config(2, 2, 2) and t.plan == "search" and t.max_alg_id == 9


def test_a_search_that_raises_is_recorded_and_the_default_still_runs():
    lib = Lib(found=RuntimeError("no search here"))
    t = tune(lib, full=False)
    assert "no search here" in t.search_error and "search raised" in t.summary()
    assert [x.source for x in t.trials] == ["default"] and t.best.config == Config()


def test_max_alg_id_bounds_the_sweep():
    lib = Lib(n_algs=10, found=(Config(1), 2))
    t = tune(lib, full=True)
    assert max(c.alg_id for c in lib.ran) == 2 and "alg cap 2 reached (max_alg_id)" in t.stop


def test_the_budget_cuts_the_sweep_but_not_the_search_and_default():
    clock = [0.0]

    def timer(cfg):
        clock[0] += 1.0
        return 10.0

    lib = Lib(n_algs=8)
    t = cs.tune(lib.search, lib.run, lib.check, timer, full=True, budget_s=3.5, clock=lambda: clock[0])
    assert "cut by the 3.5 s budget" in t.stop
    assert {x.source for x in t.trials} == {"search", "default", "sweep"}
    assert len(t.trials) < 8 + 8 * 6


def test_out_of_memory_is_not_a_configuration_error():
    def run(cfg):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        cs.tune(lambda: (Config(), None), run, lambda y: (True, 0.0), lambda c: 1.0, full=True)


def test_without_split_k_the_sweep_keeps_split_k_1():
    api = cs.Api(arg_names(SCHEMA_ALG_ONLY), None, None)
    assert api.split_ks() == (1,) and not api.has_split_k
    with pytest.raises(ValueError, match="no split_k"):
        api.config_kwargs(Config(0, 2, 1))
    lib = Lib(n_algs=3)
    tune(lib, full=True, split_ks=api.split_ks())
    assert all(c.split_k == 1 for c in lib.ran)


@pytest.mark.parametrize("schema", [SCHEMA_2_11_AND_2_14, SCHEMA_ONE_KERNEL])
def test_a_configuration_maps_onto_each_signature(schema):
    api = cs.Api(arg_names(schema), None, None)
    assert api.has_split_k and api.split_ks() == cs.SPLIT_KS
    assert api.config_kwargs(Config(3)) == {"alg_id": 3}
    assert api.config_kwargs(Config(3, 1, 2)) == {"alg_id": 3}  # torch ignores a mode without split-K
    assert api.config_kwargs(Config(3, 4)) == {"alg_id": 3, "split_k": 4}  # the library's default mode
    if "split_k_mode" in schema:
        assert api.config_kwargs(Config(3, 4, 2)) == {"alg_id": 3, "split_k": 4, "split_k_mode": 2}
        assert api.config_kwargs(Config(3, 4, 1)) == {"alg_id": 3, "split_k": 4, "split_k_mode": 1}
    else:
        assert api.config_kwargs(Config(3, 4, 2)) == {"alg_id": 3, "split_k": 4, "split_k_one_kernel": False}
        assert api.config_kwargs(Config(3, 4, 1)) == {"alg_id": 3, "split_k": 4, "split_k_one_kernel": True}


def test_mm_passes_every_argument_by_name_and_transposes_the_result():
    seen = {}

    def sparse_mm(a, b, **kw):
        seen.update(kw, a=a, b=b)
        return "y"

    api = cs.Api(arg_names(SCHEMA_2_11_AND_2_14), None, sparse_mm)
    alpha = torch.ones(8)
    assert api.mm("A", "B", Config(5, 2, 1), alpha, torch.bfloat16) == "y"
    assert seen == {"a": "A", "b": "B", "bias": None, "alpha": alpha, "out_dtype": torch.bfloat16,
                    "transpose_result": True, "alg_id": 5, "split_k": 2, "split_k_mode": 1}


def test_search_reads_mm_search_of_either_signature_and_falls_back_to_the_alg_only_search():
    calls = []

    def mm_search(*args):
        calls.append(args)
        return 4, 2, 1, 11

    api = cs.Api(arg_names(SCHEMA_2_11_AND_2_14), None, None, mm_search=mm_search)
    assert api.search("A", "B", None, torch.bfloat16) == (Config(4, 2, cs.ONE_KERNEL), 11)
    assert calls == [("A", "B", None, None, torch.bfloat16, True)]
    # split_k 1: the mode the library reports is irrelevant
    api = cs.Api(arg_names(SCHEMA_2_11_AND_2_14), None, None, mm_search=lambda *a: (4, 1, 1, 11))
    assert api.search("A", "B") == (Config(4), 11)
    # the split_k_one_kernel era returned that bool third
    api = cs.Api(arg_names(SCHEMA_ONE_KERNEL), None, None, mm_search=lambda *a: (4, 2, False, 11))
    assert api.search("A", "B") == (Config(4, 2, cs.TWO_KERNELS), 11)
    api = cs.Api(arg_names(SCHEMA_ALG_ONLY), None, None, alg_search=lambda *a: 7)
    assert api.search("A", "B") == (Config(7), None)
    with pytest.raises(RuntimeError, match="neither"):
        cs.Api(arg_names(SCHEMA_ALG_ONLY), None, None).search("A", "B")


def test_from_torch_reads_this_torchs_schema_and_search():
    api = cs.Api.from_torch()
    names = arg_names(str(torch.ops.aten._cslt_sparse_mm.default._schema))
    assert api.has_split_k == ("split_k" in names)
    assert api.mode_arg in names or api.mode_arg is None
    assert api.mm_search is getattr(getattr(torch._C, "_cusparselt", None), "mm_search", None)
    assert api.compress is torch._cslt_compress and api.sparse_mm is torch._cslt_sparse_mm


def test_alpha_vector_is_a_contiguous_float32_copy_on_the_same_device():
    alpha = torch.tensor(0.125)
    v = cs.alpha_vector(alpha, 48)
    assert v.shape == (48,) and v.dtype == torch.float32 and v.stride() == (1,) and v.device == alpha.device
    assert torch.equal(v, torch.full((48,), 0.125))
    assert v.data_ptr() != alpha.data_ptr()


def test_format_version():
    assert cs.format_version(801) == "0.8.1" and cs.format_version(602) == "0.6.2"
    assert cs.format_version(None) is None


def test_versions_built_and_loaded_are_read_from_torch_and_the_library():
    env = cs.versions()
    assert env["cusparselt_version_built"] == cs.format_version(torch.backends.cusparselt.version())
    try:
        installed = importlib.metadata.version("nvidia-cusparselt-cu13")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nvidia-cusparselt-cu13 is not installed here")
    # cusparseLtGetProperty on the library this process mapped (torch loads it at import)
    assert env["cusparselt_version_loaded"] == installed, env
    assert "libcusparseLt" in env["cusparselt_library"]
    assert {"cusparselt_version_built", "cusparselt_version_loaded"} <= common.environment().keys()


def test_device_us_per_call_sums_the_gpu_activities_only():
    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    def ev(device, us):
        return SimpleNamespace(device_type=device, time_range=SimpleNamespace(elapsed_us=lambda: us))

    events = [ev(cuda, 30.0), ev(cpu, 500.0), ev(cuda, 6.0), ev(cuda, 30.0), ev(cuda, 6.0)]
    assert common.device_us_per_call(events, calls=2) == 36.0
    assert common.device_us_per_call([ev(cpu, 5.0)], calls=1) is None  # (no CUPTI: no GPU activity seen)
