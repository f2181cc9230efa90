#include "sparse_linear_cpu.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "../layout_rules.h"

namespace s_ste {
namespace {

// sparse_linear trusts its metadata (validate_compressed is the opt-in check): no host sync.
at::Tensor call_decompress(const at::Tensor& values, const at::Tensor& meta, Layout layout) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("s_ste::decompress", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view, bool)>();
  return op.call(values, meta, rules_of(layout).name, false);
}

}  // namespace

at::Tensor sparse_linear_dense(const SparseLinearPlan& p, const at::Tensor& values, const at::Tensor& meta,
                               const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& alpha) {
  // Below autograd: the inner ATen calls must not record a graph.
  const c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  const at::Tensor w = call_decompress(values, meta, p.layout);
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
                             bias, alpha);
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CPU, m) { m.impl("sparse_linear", &sparse_linear_cpu); }

}  // namespace s_ste
