// The arguments of a CUTLASS sparse GEMM (csrc/gemm/sparse_gemm.h) for a checked sparse_linear
// plan: one mapping from the op's names (T tokens, N out_features, K in_features) to the GEMM's
// (N tokens, M out_features), shared by sparse_linear's CUDA kernel and s_ste_cuda.gemm_run.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>

#include <optional>

#include "../gemm/sparse_gemm.h"
#include "../plans.h"

namespace s_ste {

inline gemm::SparseLinearArgs gemm_args(const SparseLinearPlan& p, const at::Tensor& values, const at::Tensor& meta,
                                        const std::optional<at::Tensor>& bias,
                                        const std::optional<at::Tensor>& alpha, at::Tensor& out) {
  gemm::SparseLinearArgs args{};
  args.N = p.T;
  args.M = p.N;
  args.K = p.K;
  args.x = p.x2d.data_ptr();
  args.values = values.data_ptr();
  args.meta = meta.data_ptr();
  args.bias = bias ? bias->data_ptr() : nullptr;
  args.out = out.data_ptr();
  args.alpha = alpha ? alpha->data_ptr<float>() : nullptr;
  args.stream = at::cuda::getCurrentCUDAStream();
  return args;
}

}  // namespace s_ste
