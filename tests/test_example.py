"""CPU smoke runs of the pre-training example and the layer benchmark (their dry/tiny modes)."""
import json
import os
import subprocess
import sys

from conftest import subprocess_env
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, tmp_path, timeout=240):
    env = subprocess_env(CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_pretrain_gpt_tiny_writes_all_five_recipes(tmp_path):
    out = run(["examples/pretrain_gpt.py", "--tiny", "--steps", "12", "--eval-every", "6",
               "--results-dir", str(tmp_path)], tmp_path)
    rows = json.loads((tmp_path / "pretrain.json").read_text())
    assert [r["recipe"] for r in rows] == ["dense", "ste", "sr-ste", "s-ste", "s-ste+fp8"]
    for r in rows:
        for key in ("recipe", "steps", "final_val_loss", "flip_rate", "ms_per_step", "device", "commit"):
            assert key in r, key
        assert r["steps"] == 12 and 0 < r["final_val_loss"] < 6.0  # ln 256 = 5.55 at initialisation
        assert r["ms_per_step"] > 0
        if r["recipe"] == "dense":
            assert r["flip_rate"] is None and r["sparse_layers"] == 0
        else:
            assert 0 <= r["flip_rate"] < 0.5 and r["sparse_layers"] == 4  # fc and proj of 2 blocks
    curves = json.loads((tmp_path / "pretrain_curves.json").read_text())
    assert curves["s-ste"]["val_step"] == [6, 12] and len(curves["s-ste"]["flip_rate"]) == 12
    md = (tmp_path / "pretrain.md").read_text()
    assert "TINY" in md and "| s-ste+fp8 |" in md
    assert "wrote" in out


def test_pretrain_gpt_seeds_mean_and_standard_error(tmp_path):
    """--seeds 2: per-run rows for both seeds, a summary whose mean and se are those of the runs, paired deltas."""
    run(["examples/pretrain_gpt.py", "--tiny", "--recipes", "dense,ste,s-ste", "--seeds", "2", "--steps", "4",
         "--eval-every", "2", "--layers", "1", "--name", "cmp", "--results-dir", str(tmp_path)], tmp_path)
    data = json.loads((tmp_path / "cmp.json").read_text())
    runs = data["runs"]
    assert sorted((r["recipe"], r["seed"]) for r in runs) == sorted(
        (rec, s) for rec in ("dense", "ste", "s-ste") for s in (1337, 1338))
    by = {(r["recipe"], r["seed"]): r["final_val_loss"] for r in runs}
    assert by[("ste", 1337)] != by[("ste", 1338)], "the seeds must differ"
    summary = {r["recipe"]: r for r in data["summary"]}
    a, b = by[("s-ste", 1337)], by[("s-ste", 1338)]
    assert abs(summary["s-ste"]["final_val_loss"] - (a + b) / 2) < 1e-12
    assert abs(summary["s-ste"]["final_val_loss_se"] - abs(a - b) / 2) < 1e-12  # n = 2: se = |a − b| / 2
    d = [by[("s-ste", s)] - by[("ste", s)] for s in (1337, 1338)]
    assert abs(summary["s-ste"]["delta_vs_ste"] - sum(d) / 2) < 1e-12
    assert summary["dense"]["delta_vs_dense"] is None and summary["dense"]["flip_rate"] is None
    s_ste_run = next(r for r in runs if r["recipe"] == "s-ste")
    assert len(s_ste_run["layers"]) == 2 and all(x["beta"] > 0 and x["beta_lsq_final"] > 0 for x in s_ste_run["layers"])
    curves = json.loads((tmp_path / "cmp_curves.json").read_text())
    assert len(curves["s-ste/1338"]["interval_flip_rate"]) == 2 and curves["dense/1337"]["interval_flip_rate"] == []
    md = (tmp_path / "cmp.md").read_text()
    assert "| s-ste | 2 |" in md and "seed 1338" in md and "parameters" in md and "wall time" in md
    assert data["config"]["seeds"] == [1337, 1338] and data["config"]["steps"] == 4

    # A seed run by another process on the same split (--split-seed) is the same run, bit for bit.
    run(["examples/pretrain_gpt.py", "--tiny", "--recipes", "dense,ste,s-ste", "--seed", "1338",
         "--split-seed", "1337", "--steps", "4", "--eval-every", "2", "--layers", "1", "--name", "one",
         "--results-dir", str(tmp_path)], tmp_path)
    one = json.loads((tmp_path / "one.json").read_text())
    assert {r["recipe"]: r["final_val_loss"] for r in one} == {k: v for (k, s), v in by.items() if s == 1338}
    # --merge: the same report from the files; a (recipe, seed) pair twice is refused.
    run(["examples/pretrain_gpt.py", "--merge", str(tmp_path / "cmp.json"), "--name", "merged",
         "--results-dir", str(tmp_path)], tmp_path)
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["summary"] == data["summary"]
    assert "Merged (--merge) from cmp.json" in (tmp_path / "merged.md").read_text()
    env = subprocess_env(CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "examples/pretrain_gpt.py", "--merge", str(tmp_path / "cmp.json"),
                           str(tmp_path / "one.json"), "--results-dir", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "repeated (recipe, seed)" in proc.stderr


def test_pretrain_gpt_hf_gpt2_and_llama_train_with_a_sparse_ffn():
    """--hf: transformers' GPT-2 / Llama of the GPT's size, FFN sparsified by include="ffn", two steps (in process)."""
    import pytest
    transformers = pytest.importorskip("transformers")
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import torch

    import pretrain_gpt
    import s_ste
    cfg = pretrain_gpt.GPTConfig(layers=1, d_model=64, heads=4, seq=32)
    data = torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    llama_ffn = ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj"]
    for family, cls, ffn in (("gpt2", transformers.GPT2LMHeadModel, ["mlp.c_fc", "mlp.c_proj"]),
                             ("llama", transformers.LlamaForCausalLM, llama_ffn)):
        model = pretrain_gpt.build_model(cfg, "s-ste", 0, cpu, hf=family)
        assert isinstance(model.hf, cls)
        names = sorted(n.split(".", 3)[-1] for n, m in model.hf.named_modules() if isinstance(m, s_ste.SparseLinear))
        assert names == ffn, (family, names)
        a = pretrain_gpt.Args(steps=2, batch=4, lr=1e-3, warmup=1, eval_every=2, eval_batches=1, seed=0,
                              all_linears=False, compile=False, hf=family)
        dense = pretrain_gpt.train("dense", cfg, a, data, data, cpu, 0, 1)
        sparse = pretrain_gpt.train("s-ste", cfg, a, data, data, cpu, 0, 1)
        assert dense["sparse_layers"] == 0 and sparse["sparse_layers"] == len(ffn) and sparse["model"] == family
        assert dense["params"] == sparse["params"], "sparsify keeps the parameters"
        assert 0 < sparse["final_val_loss"] < 6.0 and sparse["final_val_loss"] != dense["final_val_loss"]
        assert all(x["beta"] > 0 and x["beta_lsq_final"] > 0 for x in sparse["layers"])


def test_pretrain_gpt_tiny_refuses_bench_results(tmp_path):
    env = subprocess_env(CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "examples/pretrain_gpt.py", "--tiny", "--results-dir",
                           os.path.join(ROOT, "bench", "results")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "never writes into bench/results" in proc.stderr


def test_corpus_split_is_by_file_and_reproducible():
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import pretrain_gpt
    files = pretrain_gpt.stdlib_files()
    assert files and all(f.endswith(".py") and "site-packages" not in f for f in files)
    a = pretrain_gpt.load_corpus(1, max_files=20)
    b = pretrain_gpt.load_corpus(1, max_files=20)
    assert a[2] == 20 and all((x == y).all() for x, y in zip(a[:2], b[:2]))
    assert len(a[0]) > 0 and len(a[1]) > 0


def test_gpt_sparsify_patterns_ffn_only_and_all_linears():
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import torch

    import pretrain_gpt
    import s_ste
    cfg = pretrain_gpt.GPTConfig(layers=2, d_model=64, heads=4, seq=32)
    ffn = pretrain_gpt.build_model(cfg, "s-ste", 0, torch.device("cpu"))
    names = sorted(n for n, m in ffn.named_modules() if isinstance(m, s_ste.SparseLinear))
    assert names == ["blocks.0.mlp.fc", "blocks.0.mlp.proj", "blocks.1.mlp.fc", "blocks.1.mlp.proj"]
    assert all(m._scale_ready for m in pretrain_gpt.sparse_layers(ffn)), "β is set right after initialisation"
    every = pretrain_gpt.build_model(cfg, "ste", 0, torch.device("cpu"), all_linears=True)
    assert len(pretrain_gpt.sparse_layers(every)) == 8
    dense = pretrain_gpt.build_model(cfg, "dense", 0, torch.device("cpu"))
    assert torch.equal(dense.blocks[0].mlp.fc.weight, ffn.blocks[0].mlp.fc.weight), "same initialisation"


def test_bench_layer_dry_run(tmp_path):
    """bench_layer.py end to end on the CPU (tiny shapes, the fast path on the ops' CPU kernels)."""
    run(["bench/bench_layer.py", "--dry-run", "--results-dir", str(tmp_path)], tmp_path)
    rows = json.loads((tmp_path / "layer.json").read_text())
    assert {(r["N"], r["K"], r["fp8"]) for r in rows} == {(256, 128, False), (256, 128, True), (128, 256, False),
                                                          (128, 256, True)}
    for r in rows:
        for key in ("N", "K", "tokens", "fp8", "sparse_ms", "dense_ms", "speedup", "device", "commit"):
            assert key in r, key
        assert r["sparse_ms"] > 0 and r["speedup"] == r["dense_ms"] / r["sparse_ms"]
    extra = json.loads((tmp_path / "layer_breakdown.json").read_text())
    assert {p["op"] for p in extra["breakdown"]} >= {"prune_and_compress", "fwd_gemm", "dgrad_gemm",
                                                      "mvue_t_compress", "wgrad_gemm", "quantize_x", "quantize_g"}
    assert [g["recipe"] for g in extra["gpt"]] == ["dense", "s-ste", "s-ste+fp8"]
    assert "DRY RUN" in (tmp_path / "layer.md").read_text()


def test_pretrain_gpt_under_torchrun_matches_one_process(tmp_path):
    """`torchrun --nproc-per-node 2` (gloo on the CPU) on the same global batch: same dense loss."""
    common = ["examples/pretrain_gpt.py", "--tiny", "--recipes", "dense,s-ste", "--steps", "4", "--eval-every", "4",
              "--batch", "8"]
    run(["-m", "torch.distributed.run", "--nproc-per-node", "2", *common, "--results-dir", str(tmp_path / "ddp")],
        tmp_path)
    run([*common, "--results-dir", str(tmp_path / "one")], tmp_path)
    ddp = {r["recipe"]: r for r in json.loads((tmp_path / "ddp" / "pretrain.json").read_text())}
    one = {r["recipe"]: r for r in json.loads((tmp_path / "one" / "pretrain.json").read_text())}
    assert ddp["dense"]["ranks"] == 2 and one["dense"]["ranks"] == 1
    assert abs(ddp["dense"]["final_val_loss"] - one["dense"]["final_val_loss"]) < 1e-4
    # s-ste: each rank draws its own MVUE sample, so only close, not equal.
    assert abs(ddp["s-ste"]["final_val_loss"] - one["s-ste"]["final_val_loss"]) < 2e-2
