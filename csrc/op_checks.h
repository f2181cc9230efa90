// The argument checks of every op, one function per op, on ArgSpecs (dtype, device,
// contiguity, sizes): the one copy that both the real kernels (through plans.cpp) and the
// fake kernels (through s_ste_cuda.check_args, op_checks_py.cpp, called by s_ste/ops.py) run,
// so a bad input raises the same error on every backend, `meta` and torch.compile's
// FakeTensors included. Each returns what the plan needs to allocate its outputs. The group
// ops (soft/hard threshold, β, MVUE) check check_group_input (arg_spec.h) alone.
#pragma once
#include <optional>
#include <string_view>

#include "arg_spec.h"
#include "dispatch.h"
#include "layout_rules.h"

namespace s_ste {

struct CompressedSpec {  // the layout and value dtype of a compressed operand
  Layout layout;
  c10::ScalarType values;
};
// prune_and_compress / prune_and_compress_dense (`op`).
CompressedSpec check_prune_and_compress_args(const char* op, const ArgSpec& w, const ArgSpec& scale,
                                             std::string_view layout, std::optional<c10::ScalarType> out_dtype);

// Compressed values + metadata: dtype, shape, the layout's alignment, metadata size, device.
Layout check_compressed_args(const char* op, const ArgSpec& values, const ArgSpec& meta, std::string_view layout);

CompressedSpec check_mvue_compress_args(const ArgSpec& g, std::string_view layout,
                                        std::optional<c10::ScalarType> out_dtype, const std::optional<ArgSpec>& scale);

// The verdict of validate_compressed (and decompress(validate=True)) on the counts its
// kernel found: a ValueError naming `op` for illegal codes (bad_units metadata units, the
// first being first_unit) or non-zero SM90 padding bytes.
void check_validated_meta(const char* op, Layout layout, int64_t K, int64_t bad_units, int64_t first_unit,
                          int64_t padding_bytes);

void check_quantize_args(const ArgSpec& x, c10::ScalarType dtype);
void check_quantize_scaled_args(const ArgSpec& x, const ArgSpec& scale, c10::ScalarType dtype, bool transpose);

struct SparseLinearSpec {
  Layout layout;
  c10::ScalarType out_dtype;  // x's; bfloat16 for FP8 operands
};
SparseLinearSpec check_sparse_linear_args(const ArgSpec& x, const ArgSpec& values, const ArgSpec& meta,
                                          const std::optional<ArgSpec>& bias, std::string_view layout,
                                          const std::optional<ArgSpec>& alpha, bool out_transposed);

}  // namespace s_ste
