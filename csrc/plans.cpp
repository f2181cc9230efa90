#include "plans.h"

#include <ATen/ATen.h>

#include "s_ste/layout_sm80.cuh"
#include "s_ste/layout_sm90.cuh"

namespace s_ste {

PrunePlan plan_prune(const char* op, const at::Tensor& w) {
  check_group_input(op, "w", w);
  return {w, at::empty_like(w), at::empty(w.sizes(), w.options().dtype(at::kBool)),
          w.numel() / 4};
}

CompressPlan plan_compress(const at::Tensor& w, const at::Tensor& scale, std::string_view layout,
                           std::optional<c10::ScalarType> out_dtype) {
  constexpr const char* op = "prune_and_compress";
  const Layout lay = parse_layout(op, layout);
  check_tensor(op, "w", w, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_dim(op, "w", w, 2);
  check_last_dim(op, "w", w, 4, "2:4 groups run along in_features");
  check_tensor(op, "scale", scale, {c10::kFloat});
  TORCH_CHECK_VALUE(scale.numel() == 1, op, ": scale must hold one element (the per-tensor beta), got shape ",
                    scale.sizes());
  check_same_device(op, "scale", scale, "w", w);
  const c10::ScalarType out = out_dtype.value_or(w.scalar_type());
  TORCH_CHECK_TYPE(out == c10::kBFloat16 || out == c10::kHalf || is_fp8(out), op,
                   ": out_dtype must be torch.bfloat16, torch.float16, torch.float8_e4m3fn or torch.float8_e5m2 "
                   "(CUTLASS's float32 sparse GEMMs are 1:2, not 2:4), got ", out,
                   out_dtype ? "" : " (from w; pass out_dtype= for a float32 weight)");
  const int64_t rows = w.size(0), K = w.size(1);
  check_compress_shape(op, lay, rows, K, out);
  auto values = at::empty({rows, K / 2}, w.options().dtype(out));
  // SM90 metadata has padding that CUTLASS expects zeroed; SM80 is written in full.
  auto meta_opts = w.options().dtype(meta_dtype(lay));
  const int64_t n_meta = meta_elements(lay, rows, K, out);
  auto meta = lay == Layout::kSm80 ? at::empty({rows, K / 16}, meta_opts)
                                   : at::zeros({n_meta}, meta_opts);
  return {w, scale, values, meta, lay, rows, K};
}

Layout check_compressed(const char* op, const at::Tensor& values, const at::Tensor& meta,
                        std::string_view layout) {
  const Layout lay = parse_layout(op, layout);
  check_tensor(op, "values", values, {c10::kBFloat16, c10::kHalf, c10::kFloat8_e4m3fn, c10::kFloat8_e5m2});
  check_dim(op, "values", values, 2);
  check_tensor(op, "meta", meta, {meta_dtype(lay)});
  check_same_device(op, "meta", meta, "values", values);
  const int64_t rows = values.size(0), K = 2 * values.size(1);
  check_compress_shape(op, lay, rows, K, values.scalar_type());
  const int64_t n_meta = meta_elements(lay, rows, K, values.scalar_type());
  TORCH_CHECK_VALUE(meta.numel() == n_meta, op, ": meta has ", meta.numel(),
                    " elements but values of shape ", values.sizes(), " in layout \"", layout,
                    "\" need ", n_meta);
  return lay;
}

DecompressPlan plan_decompress(const at::Tensor& values, const at::Tensor& meta,
                               std::string_view layout) {
  const Layout lay = check_compressed("decompress", values, meta, layout);
  const int64_t rows = values.size(0), K = 2 * values.size(1);
  return {values, meta, at::empty({rows, K}, values.options()), lay, rows, K};
}

SparseLinearPlan plan_sparse_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                                    const std::optional<at::Tensor>& bias, std::string_view layout,
                                    const std::optional<at::Tensor>& alpha) {
  constexpr const char* op = "sparse_linear";
  const Layout lay = check_compressed(op, values, meta, layout);
  const bool fp8 = is_fp8(values.scalar_type());
  if (fp8) {
    TORCH_CHECK_TYPE(x.scalar_type() == c10::kFloat8_e4m3fn, op, ": with FP8 values, x must be torch.float8_e4m3fn ",
                     "(quantize it with quantize_fp8), got ", x.scalar_type());
  } else {
    TORCH_CHECK_TYPE(x.scalar_type() == values.scalar_type(), op, ": x has dtype ", x.scalar_type(),
                     " but values has dtype ", values.scalar_type(), "; they must match");
    TORCH_CHECK_VALUE(!alpha.has_value(), op, ": alpha (the FP8 dequantization scale) is only for FP8 values; "
                      "fold a 16-bit weight's scale into prune_and_compress's scale");
  }
  const c10::ScalarType out_dtype = fp8 ? c10::kBFloat16 : values.scalar_type();
  check_same_device(op, "x", x, "values", values);
  if (alpha) {
    check_tensor(op, "alpha", *alpha, {c10::kFloat});
    TORCH_CHECK_VALUE(alpha->numel() == 1, op, ": alpha must hold one element, got shape ", alpha->sizes());
    check_same_device(op, "alpha", *alpha, "values", values);
  }
  const int64_t M = values.size(0), K = 2 * values.size(1);
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == K, op,
                    ": x.shape[-1] must equal in_features = 2 * values.shape[1] = ", K, ", got x of shape ",
                    x.sizes());
  if (bias) {
    check_tensor(op, "bias", *bias, {out_dtype});
    check_same_device(op, "bias", *bias, "values", values);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == M, op, ": bias must have shape [out_features] = [", M,
                      "], got ", bias->sizes());
  }
  std::vector<int64_t> out_sizes(x.sizes().begin(), x.sizes().end());
  out_sizes.back() = M;
  at::Tensor x2d = x.reshape({-1, K}).contiguous();
  return {x2d, out_sizes, out_dtype, lay, x2d.size(0), M, K};
}

MvuePlan plan_mvue(const at::Tensor& g, int64_t seed, int64_t offset) {
  check_group_input("mvue_24", "g", g);
  return {g, at::empty_like(g), g.numel() / 4, static_cast<uint64_t>(seed),
          static_cast<uint64_t>(offset)};
}

namespace {
// A 1-element float32 scale on `ref`'s device.
void check_scale(const char* op, const at::Tensor& scale, const char* ref_name, const at::Tensor& ref) {
  check_tensor(op, "scale", scale, {c10::kFloat});
  TORCH_CHECK_VALUE(scale.numel() == 1, op, ": scale must hold one element (a per-tensor scale), got shape ",
                    scale.sizes());
  check_same_device(op, "scale", scale, ref_name, ref);
}
}  // namespace

MvueCompressPlan plan_mvue_compress(const at::Tensor& g, int64_t seed, int64_t offset, std::string_view layout,
                                    std::optional<c10::ScalarType> out_dtype,
                                    const std::optional<at::Tensor>& scale) {
  constexpr const char* op = "mvue_24_t_compress";
  const Layout lay = parse_layout(op, layout);
  check_tensor(op, "g", g, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_dim(op, "g", g, 2);
  const c10::ScalarType out = out_dtype.value_or(g.scalar_type());
  TORCH_CHECK_TYPE(out == c10::kBFloat16 || out == c10::kHalf || is_fp8(out), op,
                   ": out_dtype must be torch.bfloat16, torch.float16, torch.float8_e5m2 or torch.float8_e4m3fn, "
                   "got ", out, out_dtype ? "" : " (from g; pass out_dtype= for a float32 gradient)");
  const int64_t T = g.size(0), N = g.size(1);
  // The compressed operand is gᵀ: N rows (out_features), reduction dim T (tokens). Name g's
  // dims before the generic layout checks speak of rows and K.
  const int64_t t_align = lay == Layout::kSm80 ? sm80::kKAlign : sm90::values_k_align(int(8 * c10::elementSize(out)));
  TORCH_CHECK_VALUE(T > 0 && T % t_align == 0, op, ": g.shape[0] (tokens, the 2:4 dim of gᵀ) must be a positive "
                    "multiple of ", t_align, " for layout \"", layout, "\" with ", out, " values (pad the tokens "
                    "with zeros), got g of shape ", g.sizes());
  TORCH_CHECK_VALUE(N > 0 && (lay != Layout::kSm80 || N % sm80::kRowAlign == 0), op, ": g.shape[1] (out_features, "
                    "the rows of gᵀ) must be positive", lay == Layout::kSm80 ? " and a multiple of 32 for layout \"sm80\"" : "",
                    ", got g of shape ", g.sizes());
  check_compress_shape(op, lay, N, T, out);
  at::Tensor s = scale ? *scale : at::ones({}, g.options().dtype(at::kFloat));
  if (scale) check_scale(op, *scale, "g", g);
  auto values = at::empty({N, T / 2}, g.options().dtype(out));
  auto meta_opts = g.options().dtype(meta_dtype(lay));
  auto meta = lay == Layout::kSm80 ? at::empty({N, T / 16}, meta_opts)
                                   : at::zeros({meta_elements(lay, N, T, out)}, meta_opts);
  auto amax = at::zeros({}, g.options().dtype(at::kFloat));
  return {g, s, values, meta, amax, lay, T, N, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset)};
}

QuantizeScaledPlan plan_quantize_scaled(const at::Tensor& x, const at::Tensor& scale, c10::ScalarType dtype,
                                        bool transpose) {
  constexpr const char* op = "quantize_fp8_scaled";
  check_tensor(op, "x", x, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_scale(op, scale, "x", x);
  TORCH_CHECK_TYPE(dtype == c10::kFloat8_e4m3fn || dtype == c10::kFloat8_e5m2, op,
                   ": dtype must be torch.float8_e4m3fn or torch.float8_e5m2, got ", dtype);
  if (transpose) check_dim(op, "x", x, 2);
  const int64_t C = x.dim() == 0 ? 1 : x.size(-1);
  const int64_t R = C == 0 ? 0 : x.numel() / C;
  auto q = at::empty(x.sizes(), x.options().dtype(dtype));
  auto q_t = transpose ? at::empty({C, R}, x.options().dtype(dtype)) : at::empty({0}, x.options().dtype(dtype));
  return {x, scale, q, q_t, at::zeros({}, x.options().dtype(at::kFloat)), dtype == c10::kFloat8_e4m3fn, transpose,
          R, C};
}

QuantizePlan plan_quantize(const at::Tensor& x, c10::ScalarType dtype) {
  constexpr const char* op = "quantize_fp8";
  check_tensor(op, "x", x, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  TORCH_CHECK_TYPE(dtype == c10::kFloat8_e4m3fn || dtype == c10::kFloat8_e5m2, op,
                   ": dtype must be torch.float8_e4m3fn or torch.float8_e5m2, got ", dtype);
  return {x, at::empty(x.sizes(), x.options().dtype(dtype)), dtype == c10::kFloat8_e4m3fn};
}

}  // namespace s_ste
