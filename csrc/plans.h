// Per-op argument checks and output allocation, shared by the CPU and CUDA kernels: each
// backend receives a checked "plan" and only runs its loop.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "checks.h"

namespace s_ste {

struct PrunePlan {  // soft_threshold_24 / hard_threshold_24
  at::Tensor w, pruned, mask;
  int64_t groups;
};
PrunePlan plan_prune(const char* op, const at::Tensor& w);

struct CompressPlan {  // prune_and_compress, prune_and_compress_dense
  at::Tensor w, scale, values, meta;
  at::Tensor dense;  // ŵ [rows, K] in the values' dtype (prune_and_compress_dense), else undefined
  Layout layout;
  int64_t rows, K;
};
CompressPlan plan_compress(const char* op, const at::Tensor& w, const at::Tensor& scale, std::string_view layout,
                           std::optional<c10::ScalarType> out_dtype, bool write_dense);

struct DecompressPlan {  // decompress
  at::Tensor values, meta, dense;
  Layout layout;
  int64_t rows, K;
};
DecompressPlan plan_decompress(const at::Tensor& values, const at::Tensor& meta,
                               std::string_view layout);

struct ValidatePlan {  // validate_compressed
  at::Tensor values, meta;
  Layout layout;
  int64_t rows, K;
  int elem_bits;  // of the values (the SM90 metadata layout depends on it)
};
ValidatePlan plan_validate(const char* op, const at::Tensor& values, const at::Tensor& meta, std::string_view layout);
// Raises a ValueError naming `op` when a check found illegal codes (bad_units metadata units,
// the first being first_unit) or non-zero SM90 padding bytes; returns otherwise.
void report_invalid_meta(const char* op, const ValidatePlan& p, int64_t bad_units, int64_t first_unit,
                         int64_t padding_bytes);

struct SparseLinearPlan {  // sparse_linear
  at::Tensor x2d;  // [T, K], contiguous
  std::vector<int64_t> y_sizes;  // [..., N]: x's, with out_features last
  c10::ScalarType out_dtype;  // x's dtype; bfloat16 for FP8 operands
  Layout layout;
  bool out_transposed;
  int64_t T, N, K;  // tokens, out_features, in_features
};
SparseLinearPlan plan_sparse_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                                    const std::optional<at::Tensor>& bias, std::string_view layout,
                                    const std::optional<at::Tensor>& alpha, bool out_transposed);
// What sparse_linear returns for the product y [T, N]: y viewed as [..., N], or yᵀ [N, T]
// contiguous with out_transposed (one transposing copy).
at::Tensor sparse_linear_output(const SparseLinearPlan& p, const at::Tensor& y2d);

// The portable sparse_linear (decompress + dense GEMM): the CPU kernel and the CUDA fallback.
at::Tensor sparse_linear_dense(const SparseLinearPlan& p, const at::Tensor& values, const at::Tensor& meta,
                               const std::optional<at::Tensor>& bias, c10::string_view layout,
                               const std::optional<at::Tensor>& alpha);

struct MvuePlan {  // mvue_24
  at::Tensor g, out;
  int64_t groups;
  uint64_t seed, offset;
};
MvuePlan plan_mvue(const at::Tensor& g, int64_t seed, int64_t offset);

struct MvueCompressPlan {  // mvue_24_t_compress: rows = N (out_features), K = T (tokens)
  at::Tensor g, scale, values, meta, amax;  // scale: 1-element float32 (ones when not given)
  Layout layout;
  int64_t T, N;
  uint64_t seed, offset;
};
MvueCompressPlan plan_mvue_compress(const at::Tensor& g, int64_t seed, int64_t offset, std::string_view layout,
                                    std::optional<c10::ScalarType> out_dtype,
                                    const std::optional<at::Tensor>& scale);

struct QuantizeScaledPlan {  // quantize_fp8_scaled
  at::Tensor x, scale, q, q_t, amax;  // q_t: [C, R] when transposing, else empty
  bool e4m3, transpose;
  int64_t R, C;  // x viewed as [R, C] (C = the last dim; R = 1 for 0-d)
};
QuantizeScaledPlan plan_quantize_scaled(const at::Tensor& x, const at::Tensor& scale, c10::ScalarType dtype,
                                        bool transpose);

struct QuantizePlan {  // quantize_fp8
  at::Tensor x, q;
  bool e4m3;
};
QuantizePlan plan_quantize(const at::Tensor& x, c10::ScalarType dtype);

}  // namespace s_ste
