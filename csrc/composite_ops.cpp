// Ops built from other ops, registered for CPU and CUDA alike until a fused kernel
// replaces them: scale_factor (soft threshold + two float64 dot products) and
// sparse_linear (decompress + dense GEMM; the CUTLASS sparse GEMM takes over on CUDA in
// csrc/gemm/).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "checks.h"

namespace s_ste {
namespace {

std::tuple<at::Tensor, at::Tensor> call_soft_threshold(const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("s_ste::soft_threshold_24", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&)>();
  return op.call(w);
}

at::Tensor call_decompress(const at::Tensor& values, const at::Tensor& meta, c10::string_view layout) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("s_ste::decompress", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view)>();
  return op.call(values, meta, layout);
}

at::Tensor scale_factor_impl(const at::Tensor& w) {
  check_group_input("scale_factor", "w", w);
  // These kernels sit below autograd: their inner ATen calls must not record a graph.
  const c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  // S(w) in float32, not rounded to w's dtype: the values prune_and_compress scales.
  const at::Tensor s = std::get<0>(call_soft_threshold(w.to(at::kFloat))).to(at::kDouble);
  const at::Tensor wd = w.to(at::kDouble);
  const at::Tensor num = (wd * s).sum(), den = (s * s).sum();
  // An all-zero pruned weight has no least-squares scale: keep it unscaled (β = 1).
  return at::where(den > 0, num / den, at::ones_like(den)).to(at::kFloat);
}

at::Tensor sparse_linear_impl(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                              const std::optional<at::Tensor>& bias, c10::string_view layout) {
  constexpr const char* op = "sparse_linear";
  check_tensor(op, "values", values, {c10::kBFloat16, c10::kHalf});
  check_dim(op, "values", values, 2);
  TORCH_CHECK_TYPE(x.scalar_type() == values.scalar_type(), op, ": x has dtype ", x.scalar_type(),
                   " but values has dtype ", values.scalar_type(), "; they must match");
  check_same_device(op, "x", x, "values", values);
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == 2 * values.size(1), op, ": x.shape[-1] must equal in_features = 2 * values.shape[1] = ",
                    2 * values.size(1), ", got x of shape ", x.sizes());
  if (bias) {
    check_tensor(op, "bias", *bias, {values.scalar_type()});
    check_same_device(op, "bias", *bias, "values", values);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == values.size(0), op,
                      ": bias must have shape [out_features] = [", values.size(0), "], got ",
                      bias->sizes());
  }
  const c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  const at::Tensor w = call_decompress(values, meta, layout);
  return at::linear(x, w, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CPU, m) {
  m.impl("scale_factor", &scale_factor_impl);
  m.impl("sparse_linear", &sparse_linear_impl);
}

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) {
  m.impl("scale_factor", &scale_factor_impl);
  m.impl("sparse_linear", &sparse_linear_impl);
}

}  // namespace s_ste
