// Per-op output allocation, shared by the CPU and CUDA kernels: each plan_* runs the op's
// checks (op_checks.h) once, allocates the outputs and names the sizes the kernel loops
// over; each backend receives the plan and only runs its loop. Names: a compressed operand
// is [rows, K] (K the 2:4 dimension); sparse_linear's product is y [T, N] = x [T, K] · Ŵᵀ with
// T tokens, N out_features, K in_features (csrc/gemm/ says M for out_features and N for
// tokens; sparse_linear_cuda.cpp maps the names once).
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "dispatch.h"

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

struct CompressedPlan {  // decompress (dense: its output), validate_compressed (dense undefined)
  at::Tensor values, meta, dense;
  Layout layout;
  int64_t rows, K;
  int elem_bits;  // of the values (the SM90 metadata layout depends on it)
};
CompressedPlan plan_decompress(const at::Tensor& values, const at::Tensor& meta, std::string_view layout);
CompressedPlan plan_validate(const char* op, const at::Tensor& values, const at::Tensor& meta,
                             std::string_view layout);

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

struct MvuePlan {  // mvue_24
  at::Tensor g, out;
  int64_t groups;
  uint64_t seed, offset;
};
MvuePlan plan_mvue(const at::Tensor& g, int64_t seed, int64_t offset);

struct MvueCompressPlan {  // mvue_24_t_compress: g [T, N]; the compressed gᵀ has rows = N, K = T
  at::Tensor g, scale, values, meta, amax;  // scale: 1-element float32 (ones when not given)
  Layout layout;
  int64_t T, N;  // tokens, out_features
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
