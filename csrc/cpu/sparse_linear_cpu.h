// The portable sparse_linear: decompress, then a dense GEMM. The CPU kernel, and the CUDA
// fallback for the problems no CUTLASS kernel takes (csrc/cuda/sparse_linear_cuda.cpp).
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "../plans.h"

namespace s_ste {

at::Tensor sparse_linear_dense(const SparseLinearPlan& p, const at::Tensor& values, const at::Tensor& meta,
                               const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& alpha);

}  // namespace s_ste
