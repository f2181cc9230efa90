// sparse_linear on CUDA: pick the CUTLASS sparse GEMM that takes the problem (layout family,
// dtype, GPU, can_implement) and run it; problems none takes fall back to decompress + dense
// GEMM with a one-time warning that says why.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>

#include "../cpu/sparse_linear_cpu.h"
#include "../gemm/sparse_gemm.h"
#include "../plans.h"
#include "gemm_args.h"

namespace s_ste {
namespace {

gemm::Element element_of(c10::ScalarType t) {
  switch (t) {
    case c10::kBFloat16: return gemm::Element::kBF16;
    case c10::kHalf: return gemm::Element::kF16;
    case c10::kFloat8_e4m3fn: return gemm::Element::kE4M3;
    case c10::kFloat8_e5m2: return gemm::Element::kE5M2;
    default: TORCH_CHECK(false, "sparse_linear: no GEMM element type for ", t);
  }
}

at::Tensor sparse_linear_cuda(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                              const std::optional<at::Tensor>& bias, c10::string_view layout,
                              const std::optional<at::Tensor>& alpha, bool out_transposed) {
  const SparseLinearPlan p = plan_sparse_linear(x, values, meta, bias, layout, alpha, out_transposed);
  const c10::cuda::CUDAGuard guard(values.device());
  const auto out_options = values.options().dtype(p.out_dtype);
  if (p.T == 0) return sparse_linear_output(p, at::empty({0, p.N}, out_options));

  at::Tensor out = at::empty({p.T * p.N}, out_options);
  gemm::SparseLinearArgs args = gemm_args(p, values, meta, bias, alpha, out);  // (GEMM N = tokens, M = out_features)

  std::string why;
  const cudaDeviceProp* device = at::cuda::getCurrentDeviceProperties();
  // The device index turns on select's check of each kernel's loaded image (cached per kernel
  // and device): a wrong-architecture build, or a GPU this build has no image for, falls back
  // below with the warning instead of launching a kernel that computes nothing.
  const gemm::SparseGemmKernel* kernel =
      gemm::select_kernel(args, p.layout == Layout::kSm90, element_of(values.scalar_type()),
                          element_of(p.x2d.scalar_type()), device->major, device->multiProcessorCount, &why,
                          values.get_device());
  gemm::record_last_kernel(kernel ? kernel->name : "fallback");
  if (kernel == nullptr) {
    TORCH_WARN_ONCE("sparse_linear: no CUTLASS sparse kernel takes this problem (N=", args.N, ", M=", args.M, ", K=",
                    args.K, ", layout \"", layout, "\", ", values.scalar_type(), "): ", why,
                    ". Falling back to decompress + dense GEMM.");
    return sparse_linear_dense(p, values, meta, bias, alpha);
  }
  args = gemm::args_for(*kernel, args);
  at::Tensor workspace;
  if (const size_t bytes = kernel->workspace_bytes(args)) {
    workspace = at::empty({static_cast<int64_t>(bytes)}, values.options().dtype(at::kByte));
    args.workspace = workspace.data_ptr();
  }
  const gemm::Status status = kernel->run(args);
  TORCH_CHECK(status == nullptr, "sparse_linear: CUTLASS kernel ", kernel->name, " failed: ", status);

  const bool add_bias = bias.has_value() && !kernel->has_bias;
  if (!kernel->out_is_transposed) {
    at::Tensor y = out.view({p.T, p.N});
    if (add_bias) y.add_(*bias);
    return sparse_linear_output(p, y);
  }
  // The kernel wrote yᵀ [N, T]: what out_transposed asks for (no bias there), as is;
  // else transpose (and add the bias) in one pass.
  const at::Tensor yt = out.view({p.N, p.T});
  if (p.out_transposed) return yt;
  at::Tensor y = at::empty({p.T, p.N}, out_options);
  if (add_bias) at::add_out(y, yt.t(), *bias);
  else y.copy_(yt.t());
  return y.view(p.y_sizes);
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) { m.impl("sparse_linear", &sparse_linear_cuda); }

}  // namespace s_ste
