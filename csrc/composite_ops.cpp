// Ops built from other ops: scale_factor (soft threshold + two float64 dot products, CPU
// and CUDA until a fused reduction replaces it) and the portable sparse_linear (decompress +
// dense GEMM: the CPU kernel, and the CUDA fallback of sparse_linear_cuda.cpp).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "arg_checks.h"
#include "checks.h"
#include "plans.h"

namespace s_ste {
namespace {

std::tuple<at::Tensor, at::Tensor> call_soft_threshold(const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("s_ste::soft_threshold_24", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&)>();
  return op.call(w);
}

// sparse_linear trusts its metadata (validate_compressed is the opt-in check): no host sync.
at::Tensor call_decompress(const at::Tensor& values, const at::Tensor& meta, c10::string_view layout) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("s_ste::decompress", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view, bool)>();
  return op.call(values, meta, layout, false);
}

at::Tensor scale_factor_impl(const at::Tensor& w) {
  check_group_op_args("scale_factor", "w", spec_of(w));
  // These kernels sit below autograd: their inner ATen calls must not record a graph.
  const c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  // S(w) in float32, not rounded to w's dtype: the values prune_and_compress scales.
  const at::Tensor s = std::get<0>(call_soft_threshold(w.to(at::kFloat))).to(at::kDouble);
  const at::Tensor wd = w.to(at::kDouble);
  const at::Tensor num = (wd * s).sum(), den = (s * s).sum();
  // An all-zero pruned weight has no least-squares scale: keep it unscaled (β = 1). A NaN or
  // Inf weight makes den NaN or Inf and β NaN: a diverged weight must not look finite.
  return at::where(den == 0, at::ones_like(den), num / den).to(at::kFloat);
}

}  // namespace

// The portable sparse_linear: decompress, then a dense GEMM. It is the CPU kernel, and
// the CUDA fallback for shapes and devices no CUTLASS kernel takes (sparse_linear_cuda.cpp).
at::Tensor sparse_linear_dense(const SparseLinearPlan& p, const at::Tensor& values, const at::Tensor& meta,
                               const std::optional<at::Tensor>& bias, c10::string_view layout,
                               const std::optional<at::Tensor>& alpha) {
  const c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  const at::Tensor w = call_decompress(values, meta, layout);
  if (!is_fp8(values.scalar_type())) return sparse_linear_output(p, at::linear(p.x2d, w, bias));
  // FP8: what the GEMM computes, alpha·(x·ŵᵀ) + bias in float32, rounded once to bfloat16.
  at::Tensor acc = at::linear(p.x2d.to(at::kFloat), w.to(at::kFloat));
  if (alpha) acc.mul_(alpha->reshape({}));
  if (bias) acc.add_(bias->to(at::kFloat));
  return sparse_linear_output(p, acc.to(p.out_dtype));
}

namespace {

at::Tensor sparse_linear_cpu(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                             const std::optional<at::Tensor>& bias, c10::string_view layout,
                             const std::optional<at::Tensor>& alpha, bool out_transposed) {
  return sparse_linear_dense(plan_sparse_linear(x, values, meta, bias, layout, alpha, out_transposed), values, meta,
                             bias, layout, alpha);
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CPU, m) {
  m.impl("scale_factor", &scale_factor_impl);
  m.impl("sparse_linear", &sparse_linear_cpu);
}

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) { m.impl("scale_factor", &scale_factor_impl); }

}  // namespace s_ste
