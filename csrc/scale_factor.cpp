// scale_factor, built from other ops: the soft threshold + two float64 dot products, on the
// CPU and on CUDA alike (until a fused reduction replaces it).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "arg_spec.h"

namespace s_ste {
namespace {

std::tuple<at::Tensor, at::Tensor> call_soft_threshold(const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("s_ste::soft_threshold_24", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&)>();
  return op.call(w);
}

at::Tensor scale_factor(const at::Tensor& w) {
  check_group_input("scale_factor", "w", spec_of(w));
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

TORCH_LIBRARY_IMPL(s_ste, CPU, m) { m.impl("scale_factor", &scale_factor); }

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) { m.impl("scale_factor", &scale_factor); }

}  // namespace s_ste
