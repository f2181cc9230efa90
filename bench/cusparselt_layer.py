"""An S-STE layer built on cuSPARSELt (issue 16, item 5): SparseLinear(recipe="s-ste")'s math with
cuSPARSELt's raw torch ops where ours runs s-ste's kernels, so that bench_layer can tell a layer
speed-up apart into kernels versus algorithm.

One training step (the weight changes at every optimizer step, so ŵ is rebuilt every step, as
bench_layer does for ours):
- forward: ŵ = β·S(w) (s_ste.soft_threshold_24 then × β, in the layer's dtype), and
  y = _cslt_sparse_mm(_cslt_compress(ŵ), xᵀ) with transpose_result (y [T, N] row-major);
- input gradient: dx = g·ŵ, a dense GEMM (cuBLAS), as ours;
- weight gradient: ĝ = mvue_24(gᵀ) (2:4 along the tokens, the same keyed draw as ours: seed,
  step), dW = _cslt_sparse_mm(_cslt_compress(ĝ), x) [N, K], the parameter's own layout.
FP8 (``fp8=True``): the forward E4M3 × E4M3 -> bf16 (x and ŵ cast by s_ste.quantize_fp8_scaled with
delayed scaling, alpha = 1/(s_x·s_w) as cuSPARSELt's device vector), the input gradient dense FP8
(``torch._scaled_mm``, E5M2 g × E4M3 ŵ, as bench_layer's dense FP8 baseline), the weight gradient as
in bf16 (cuSPARSELt has no E5M2: bf16 ĝ × bf16 x).

Every cuSPARSELt GEMM runs at the configuration cuSPARSELt's own search picks for its shape,
searched once at the layer's first call (a user would do the same; bench_gemm sweeps further).
"""
from __future__ import annotations

import torch
from torch import nn

import cusparselt

import s_ste
from s_ste import fp8_scaling

BF16, E4M3, E5M2 = torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2


class DelayedScales:
    """Per-tensor FP8 scales from an amax history (s_ste.fp8_scaling's recipe, as SparseLinear's FP8
    fast path runs it): the weight's amax is pushed before its cast, x's and g's are recorded by
    their casts and folded in at the next step. First step: scales 1 (x, ŵ) and 2¹⁰ (g)."""

    def __init__(self, history_len: int, device) -> None:
        self.history, self.pending = fp8_scaling.new_state(history_len, device)
        self.first = torch.tensor([1.0, 1.0, 2.0 ** 10, 2.0 ** 10], device=device)

    def next(self, w_amax: torch.Tensor) -> torch.Tensor:
        """This step's scales (fp8_scaling.KINDS order), float32 on the device, no host sync."""
        fp8_scaling.fold(self.history, self.pending)
        fp8_scaling.push(self.history, fp8_scaling.W, w_amax)
        return torch.where(self.history.amax(dim=1) > 0, fp8_scaling.scales(self.history), self.first)


class CusparseltSSTE(nn.Module):
    """y = x ŵᵀ with S-STE's ŵ = β·S(w), trained through cuSPARSELt (bias-free, 2-D or batched x)."""

    def __init__(self, in_features: int, out_features: int, api: cusparselt.Api, fp8: bool = False, seed: int = 0,
                 device=None, dtype=BF16, history_len: int = fp8_scaling.DEFAULT_HISTORY_LEN) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.register_buffer("scale", torch.ones((), dtype=torch.float32, device=device))
        self.api, self.fp8, self.seed = api, fp8, seed
        self.draws = 0                                          # the MVUE draw count (ours: mvue_rng[1])
        self.configs: dict[tuple, cusparselt.Config] = {}       # per GEMM shape: the search's pick
        self.search_notes: list[str] = []
        self.scales = DelayedScales(history_len, device) if fp8 else None
        self._scale_ready = False

    @torch.no_grad()
    def reset_scale(self) -> None:
        """β from the current weight, then fixed (as SparseLinear.reset_scale)."""
        self.scale.copy_(s_ste.scale_factor(self.weight.detach().contiguous()))
        self._scale_ready = True

    def mm(self, op: str, a: torch.Tensor, b: torch.Tensor, alpha=None, out_dtype=None,
           transpose_result: bool = True) -> torch.Tensor:
        """_cslt_sparse_mm(_cslt_compress(a), b) at the configuration the search picked for this shape."""
        c = self.api.compress(a)
        key = (op, tuple(a.shape), tuple(b.shape), b.stride(), a.dtype, transpose_result)
        if key not in self.configs:
            try:
                self.configs[key] = self.api.search(c, b, alpha, out_dtype, transpose_result)[0]
            except Exception as e:  # the default configuration still runs
                self.configs[key] = cusparselt.DEFAULT
                self.search_notes.append(f"{op}: search raised {cusparselt.short_error(e)}")
        return self.api.mm(c, b, self.configs[key], alpha, out_dtype, transpose_result)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._scale_ready:
            self.reset_scale()
        x2 = x.reshape(-1, self.in_features).contiguous()
        if x2.shape[0] % 16:
            raise ValueError(f"CusparseltSSTE: tokens must be a multiple of 16 (cuSPARSELt, 2:4 along the "
                             f"tokens), got {x2.shape[0]}")
        draw = self.draws
        self.draws += 1
        fn = _Fp8 if self.fp8 else _Bf16
        return fn.apply(x2, self.weight, self.scale, self, draw).reshape(*x.shape[:-1], self.out_features)


def _w_hat(w: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return s_ste.soft_threshold_24(w.detach())[0] * beta  # (a 0-d β keeps w's dtype)


def _wgrad(layer: CusparseltSSTE, g: torch.Tensor, x: torch.Tensor, draw: int) -> torch.Tensor:
    g_hat = s_ste.mvue_24(g.t().contiguous(), layer.seed, draw)  # [N, T], 2:4 along the tokens
    return layer.mm("wgrad", g_hat, x, transpose_result=False)   # dW [N, K]


class _Bf16(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, beta, layer, draw):
        w_hat = _w_hat(w, beta)
        ctx.save_for_backward(x, w_hat)
        ctx.layer, ctx.draw = layer, draw
        return layer.mm("fwd", w_hat, x.t())

    @staticmethod
    def backward(ctx, g):
        x, w_hat = ctx.saved_tensors
        g = g.contiguous()
        return g @ w_hat, _wgrad(ctx.layer, g, x, ctx.draw), None, None, None


class _Fp8(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, beta, layer, draw):
        X, W, GRAD = fp8_scaling.X, fp8_scaling.W, fp8_scaling.GRAD
        s = layer.scales.next(fp8_scaling.weight_amax(w, beta))
        wq, wq_t, _ = s_ste.quantize_fp8_scaled(_w_hat(w, beta), s[W].reshape(1), E4M3, transpose=True)
        xq, _, amax_x = s_ste.quantize_fp8_scaled(x, s[X].reshape(1), E4M3)
        alpha = cusparselt.alpha_vector((s[X] * s[W]).reciprocal(), layer.out_features)
        y = layer.mm("fwd", wq, xq.t(), alpha=alpha, out_dtype=BF16)
        layer.scales.pending[X] = fp8_scaling.clean(amax_x)
        ctx.save_for_backward(x, wq_t, s[W], s[GRAD])
        ctx.layer, ctx.draw = layer, draw
        return y

    @staticmethod
    def backward(ctx, g):
        x, wq_t, s_w, s_g = ctx.saved_tensors
        layer = ctx.layer
        g = g.contiguous()
        gq, _, amax_g = s_ste.quantize_fp8_scaled(g, s_g.reshape(1), E5M2)
        dx = torch._scaled_mm(gq, wq_t.t(), scale_a=s_g.reciprocal(), scale_b=s_w.reciprocal(), out_dtype=BF16)
        layer.scales.pending[fp8_scaling.GRAD] = fp8_scaling.clean(amax_g)
        return dx.to(x.dtype), _wgrad(layer, g.to(x.dtype), x, ctx.draw), None, None, None
