#include "plans.h"

#include <ATen/ATen.h>

#include "layout_rules.h"
#include "op_checks.h"


namespace s_ste {

PrunePlan plan_prune(const char* op, const at::Tensor& w) {
  check_group_input(op, "w", spec_of(w));
  return {w, at::empty_like(w), at::empty(w.sizes(), w.options().dtype(at::kBool)),
          w.numel() / 4};
}

namespace {
// The metadata of a compressed [rows, K] operand: SM90's has padding that CUTLASS expects
// zeroed; SM80's is written in full.
at::Tensor alloc_meta(const at::Tensor& like, Layout layout, int64_t rows, int64_t K, c10::ScalarType values) {
  const auto opts = like.options().dtype(meta_dtype(layout));
  const auto shape = meta_shape(layout, rows, K, values);
  return layout == Layout::kSm80 ? at::empty(shape, opts) : at::zeros(shape, opts);
}
}  // namespace

CompressPlan plan_compress(const char* op, const at::Tensor& w, const at::Tensor& scale, std::string_view layout,
                           std::optional<c10::ScalarType> out_dtype, bool write_dense) {
  const auto [lay, out] = check_prune_and_compress_args(op, spec_of(w), spec_of(scale), layout, out_dtype);
  const int64_t rows = w.size(0), K = w.size(1);
  auto values = at::empty({rows, K / 2}, w.options().dtype(out));
  auto dense = write_dense ? at::empty({rows, K}, w.options().dtype(out)) : at::Tensor();
  return {w, scale, values, alloc_meta(w, lay, rows, K, out), dense, lay, rows, K};
}

namespace {
CompressedPlan plan_compressed(const char* op, const at::Tensor& values, const at::Tensor& meta,
                               std::string_view layout, bool dense) {
  const Layout lay = check_compressed_args(op, spec_of(values), spec_of(meta), layout);
  const int64_t rows = values.size(0), K = 2 * values.size(1);
  return {values, meta, dense ? at::empty({rows, K}, values.options()) : at::Tensor(), lay, rows, K,
          value_bits(values.scalar_type())};
}
}  // namespace

CompressedPlan plan_decompress(const at::Tensor& values, const at::Tensor& meta, std::string_view layout) {
  return plan_compressed("decompress", values, meta, layout, /*dense=*/true);
}

CompressedPlan plan_validate(const char* op, const at::Tensor& values, const at::Tensor& meta,
                             std::string_view layout) {
  return plan_compressed(op, values, meta, layout, /*dense=*/false);
}

SparseLinearPlan plan_sparse_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                                    const std::optional<at::Tensor>& bias, std::string_view layout,
                                    const std::optional<at::Tensor>& alpha, bool out_transposed) {
  auto spec_or_none = [](const std::optional<at::Tensor>& t) {
    return t ? std::optional<ArgSpec>(spec_of(*t)) : std::nullopt;
  };
  const auto [lay, out_dtype] = check_sparse_linear_args(spec_of(x), spec_of(values), spec_of(meta),
                                                         spec_or_none(bias), layout, spec_or_none(alpha), out_transposed);
  const int64_t N = values.size(0), K = 2 * values.size(1);
  at::Tensor x2d = x.reshape({-1, K}).contiguous();
  const int64_t T = x2d.size(0);
  std::vector<int64_t> y_sizes(x.sizes().begin(), x.sizes().end());
  y_sizes.back() = N;
  return {x2d, y_sizes, out_dtype, lay, out_transposed, T, N, K};
}

at::Tensor sparse_linear_output(const SparseLinearPlan& p, const at::Tensor& y2d) {
  return p.out_transposed ? y2d.t().contiguous() : y2d.view(p.y_sizes);
}

MvuePlan plan_mvue(const at::Tensor& g, int64_t seed, int64_t offset) {
  check_group_input("mvue_24", "g", spec_of(g));
  return {g, at::empty_like(g), g.numel() / 4, static_cast<uint64_t>(seed),
          static_cast<uint64_t>(offset)};
}

MvueCompressPlan plan_mvue_compress(const at::Tensor& g, int64_t seed, int64_t offset, std::string_view layout,
                                    std::optional<c10::ScalarType> out_dtype,
                                    const std::optional<at::Tensor>& scale) {
  const auto [lay, out] = check_mvue_compress_args(
      spec_of(g), layout, out_dtype, scale ? std::optional<ArgSpec>(spec_of(*scale)) : std::nullopt);
  const int64_t T = g.size(0), N = g.size(1);
  at::Tensor s = scale ? *scale : at::ones({}, g.options().dtype(at::kFloat));
  auto values = at::empty({N, T / 2}, g.options().dtype(out));
  auto amax = at::zeros({}, g.options().dtype(at::kFloat));
  return {g, s, values, alloc_meta(g, lay, N, T, out), amax, lay, T, N, static_cast<uint64_t>(seed),
          static_cast<uint64_t>(offset)};
}

QuantizeScaledPlan plan_quantize_scaled(const at::Tensor& x, const at::Tensor& scale, c10::ScalarType dtype,
                                        bool transpose) {
  check_quantize_scaled_args(spec_of(x), spec_of(scale), dtype, transpose);
  const int64_t C = x.dim() == 0 ? 1 : x.size(-1);
  // R from the sizes, not numel / C: x of shape [3, 0] is 3 rows of nothing (q_t is [0, 3]).
  int64_t R = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) R *= x.size(d);
  auto q = at::empty(x.sizes(), x.options().dtype(dtype));
  auto q_t = transpose ? at::empty({C, R}, x.options().dtype(dtype)) : at::empty({0}, x.options().dtype(dtype));
  return {x, scale, q, q_t, at::zeros({}, x.options().dtype(at::kFloat)), dtype == c10::kFloat8_e4m3fn, transpose,
          R, C};
}

QuantizePlan plan_quantize(const at::Tensor& x, c10::ScalarType dtype) {
  check_quantize_args(spec_of(x), dtype);
  return {x, at::empty(x.sizes(), x.options().dtype(dtype)), dtype == c10::kFloat8_e4m3fn};
}

}  // namespace s_ste
