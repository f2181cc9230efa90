#include "op_checks.h"

#include <string>

#include "s_ste/layout_sm80.cuh"
#include "s_ste/layout_sm90.cuh"


namespace s_ste {

namespace {
// A 1-element float32 scale on `ref`'s device.
void check_scale(const char* op, const char* name, const ArgSpec& scale, const char* what, const char* ref_name,
                 const ArgSpec& ref) {
  check_tensor(op, name, scale, {c10::kFloat});
  const int64_t n = scale.numel();
  TORCH_CHECK_VALUE(!known(n) || n == 1, op, ": ", name, " must hold one element (", what, "), got shape ",
                    shape_str(scale));
  check_same_device(op, name, scale, ref_name, ref);
}

void check_fp8_dtype(const char* op, c10::ScalarType dtype) {
  TORCH_CHECK_TYPE(dtype == c10::kFloat8_e4m3fn || dtype == c10::kFloat8_e5m2, op,
                   ": dtype must be torch.float8_e4m3fn or torch.float8_e5m2, got ", dtype);
}
}  // namespace

CompressedSpec check_prune_and_compress_args(const char* op, const ArgSpec& w, const ArgSpec& scale,
                                             std::string_view layout, std::optional<c10::ScalarType> out_dtype) {
  const Layout lay = parse_layout(op, layout);
  check_tensor(op, "w", w, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_dim(op, "w", w, 2);
  check_last_dim(op, "w", w, 4, "2:4 groups run along in_features");
  check_scale(op, "scale", scale, "the per-tensor beta", "w", w);
  const c10::ScalarType out = out_dtype.value_or(w.dtype);
  TORCH_CHECK_TYPE(out == c10::kBFloat16 || out == c10::kHalf || is_fp8(out), op,
                   ": out_dtype must be torch.bfloat16, torch.float16, torch.float8_e4m3fn or torch.float8_e5m2 "
                   "(CUTLASS's float32 sparse GEMMs are 1:2, not 2:4), got ", out,
                   out_dtype ? "" : " (from w; pass out_dtype= for a float32 weight)");
  check_compress_shape(op, lay, w.size(0), w.size(1), out);
  return {lay, out};
}

Layout check_compressed_args(const char* op, const ArgSpec& values, const ArgSpec& meta, std::string_view layout) {
  const Layout lay = parse_layout(op, layout);
  check_tensor(op, "values", values, {c10::kBFloat16, c10::kHalf, c10::kFloat8_e4m3fn, c10::kFloat8_e5m2});
  check_dim(op, "values", values, 2);
  check_tensor(op, "meta", meta, {meta_dtype(lay)});
  check_same_device(op, "meta", meta, "values", values);
  const int64_t rows = values.size(0), K = known(values.size(1)) ? 2 * values.size(1) : ArgSpec::kUnknownSize;
  check_compress_shape(op, lay, rows, K, values.dtype);
  const int64_t n_meta = meta_elements(lay, rows, K, values.dtype), have = meta.numel();
  TORCH_CHECK_VALUE(!known(n_meta) || !known(have) || have == n_meta, op, ": meta has ", have,
                    " elements but values of shape ", shape_str(values), " in layout \"", layout, "\" need ", n_meta);
  return lay;
}

CompressedSpec check_mvue_compress_args(const ArgSpec& g, std::string_view layout,
                                        std::optional<c10::ScalarType> out_dtype, const std::optional<ArgSpec>& scale) {
  constexpr const char* op = "mvue_24_t_compress";
  const Layout lay = parse_layout(op, layout);
  check_tensor(op, "g", g, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_dim(op, "g", g, 2);
  const c10::ScalarType out = out_dtype.value_or(g.dtype);
  TORCH_CHECK_TYPE(out == c10::kBFloat16 || out == c10::kHalf || is_fp8(out), op,
                   ": out_dtype must be torch.bfloat16, torch.float16, torch.float8_e5m2 or torch.float8_e4m3fn, "
                   "got ", out, out_dtype ? "" : " (from g; pass out_dtype= for a float32 gradient)");
  const int64_t T = g.size(0), N = g.size(1);
  // The compressed operand is gᵀ: N rows (out_features), reduction dim T (tokens). Name g's
  // dims before the generic layout checks speak of rows and K.
  const LayoutRules& rules = rules_of(lay);
  // sm80 holds no FP8 values (k_align 0): its 16-bit rule here, check_compress_shape below names the dtype.
  const int64_t t_align = rules.k_align(value_bits(out)) ? rules.k_align(value_bits(out)) : rules.k_align16;
  TORCH_CHECK_VALUE(!known(T) || (T > 0 && T % t_align == 0), op, ": g.shape[0] (tokens, the 2:4 dim of gᵀ) must be "
                    "a positive multiple of ", t_align, " for layout \"", layout, "\" with ", out, " values (pad the "
                    "tokens with zeros), got g of shape ", shape_str(g));
  const std::string row_rule = rules.row_align > 1 ? " and a multiple of " + std::to_string(rules.row_align) +
                                                         " for layout \"" + rules.name + "\""
                                                   : "";
  TORCH_CHECK_VALUE(!known(N) || (N > 0 && N % rules.row_align == 0), op,
                    ": g.shape[1] (out_features, the rows of gᵀ) must be positive", row_rule, ", got g of shape ",
                    shape_str(g));
  check_compress_shape(op, lay, N, T, out);
  if (scale) check_scale(op, "scale", *scale, "a per-tensor scale", "g", g);
  return {lay, out};
}

void check_validated_meta(const char* op, Layout layout, int64_t K, int64_t bad_units, int64_t first_unit,
                          int64_t padding_bytes) {
  const int64_t unit_cols = layout == Layout::kSm80 ? sm80::kMetaCols : sm90::kMetaCols, cols = K / unit_cols;
  TORCH_CHECK_VALUE(bad_units == 0, op, ": meta holds illegal 2:4 codes in ", bad_units,
                    " metadata element(s), the first at row ", first_unit / cols, ", columns ",
                    (first_unit % cols) * unit_cols, "..", (first_unit % cols + 1) * unit_cols - 1,
                    " (legal codes: 0x4 0x8 0x9 0xC 0xD 0xE, i.e. kept positions i0 < i1); "
                    "corrupt or foreign metadata: rebuild it with prune_and_compress");
  TORCH_CHECK_VALUE(padding_bytes == 0, op, ": ", padding_bytes, " padding byte(s) of the \"sm90\" metadata are "
                    "not zero (CUTLASS reads them); corrupt metadata: rebuild it with prune_and_compress");
}

void check_quantize_args(const ArgSpec& x, c10::ScalarType dtype) {
  constexpr const char* op = "quantize_fp8";
  check_tensor(op, "x", x, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_fp8_dtype(op, dtype);
}

void check_quantize_scaled_args(const ArgSpec& x, const ArgSpec& scale, c10::ScalarType dtype, bool transpose) {
  constexpr const char* op = "quantize_fp8_scaled";
  check_tensor(op, "x", x, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_scale(op, "scale", scale, "a per-tensor scale", "x", x);
  check_fp8_dtype(op, dtype);
  if (transpose) check_dim(op, "x", x, 2);
}

SparseLinearSpec check_sparse_linear_args(const ArgSpec& x, const ArgSpec& values, const ArgSpec& meta,
                                          const std::optional<ArgSpec>& bias, std::string_view layout,
                                          const std::optional<ArgSpec>& alpha, bool out_transposed) {
  constexpr const char* op = "sparse_linear";
  const Layout lay = check_compressed_args(op, values, meta, layout);
  const bool fp8 = is_fp8(values.dtype);
  if (fp8) {
    TORCH_CHECK_TYPE(x.dtype == c10::kFloat8_e4m3fn, op, ": with FP8 values, x must be torch.float8_e4m3fn ",
                     "(quantize it with quantize_fp8), got ", x.dtype);
  } else {
    TORCH_CHECK_TYPE(x.dtype == values.dtype, op, ": x has dtype ", x.dtype, " but values has dtype ", values.dtype,
                     "; they must match");
    TORCH_CHECK_VALUE(!alpha.has_value(), op, ": alpha (the FP8 dequantization scale) is only for FP8 values; "
                      "fold a 16-bit weight's scale into prune_and_compress's scale");
  }
  const c10::ScalarType out_dtype = fp8 ? c10::kBFloat16 : values.dtype;
  check_same_device(op, "x", x, "values", values);
  if (alpha) check_scale(op, "alpha", *alpha, "the dequantization scale", "values", values);
  const int64_t M = values.size(0), K = known(values.size(1)) ? 2 * values.size(1) : ArgSpec::kUnknownSize;
  TORCH_CHECK_VALUE(x.dim() >= 1, op, ": x must have at least one dimension, got a 0-d tensor");
  TORCH_CHECK_VALUE(!known(K) || !known(x.size(-1)) || x.size(-1) == K, op,
                    ": x.shape[-1] must equal in_features = 2 * values.shape[1] = ", K, ", got x of shape ",
                    shape_str(x));
  if (out_transposed) {
    TORCH_CHECK_VALUE(!bias, op, ": bias must be None with out_transposed=True (yᵀ is the weight-gradient "
                      "product, which has no bias)");
    TORCH_CHECK_VALUE(x.dim() == 2, op, ": out_transposed=True needs a 2-D x [tokens, in_features], got x of shape ",
                      shape_str(x));
  }
  if (bias) {
    check_tensor(op, "bias", *bias, {out_dtype});
    check_same_device(op, "bias", *bias, "values", values);
    TORCH_CHECK_VALUE(bias->dim() == 1 && (!known(M) || !known(bias->size(0)) || bias->size(0) == M), op,
                      ": bias must have shape [out_features] = [", M, "], got ", shape_str(*bias));
  }
  return {lay, out_dtype};
}

}  // namespace s_ste
