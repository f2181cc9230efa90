// CUDA kernel of quantize_fp8. The amax and its finiteness check go through ATen and one
// host sync (the error must be raised before the cast); issue 3 fuses amax and delays
// scaling so the training step never waits on the host.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>

#include "../plans.h"
#include "launch.cuh"
#include "s_ste/fp8.cuh"

namespace s_ste {
namespace {

template <typename T>
__global__ void quantize_kernel(const T* __restrict__ x, uint8_t* __restrict__ q, int64_t n, float scale,
                                fp8::Format fmt) {
  S_STE_GRID_STRIDE(i, n) { q[i] = fp8::encode(mul_rn(static_cast<float>(x[i]), scale), fmt); }
}

std::tuple<at::Tensor, at::Tensor> quantize_fp8_cuda(const at::Tensor& x_in, c10::ScalarType dtype) {
  QuantizePlan p = plan_quantize(x_in, dtype);
  const c10::cuda::CUDAGuard guard(p.x.device());
  const fp8::Format fmt = p.e4m3 ? fp8::kE4M3 : fp8::kE5M2;
  const int64_t n = p.x.numel();
  const float amax = n == 0 ? 0.0f : p.x.abs().amax().to(at::kFloat).item<float>();
  TORCH_CHECK_VALUE(std::isfinite(amax), "quantize_fp8: x contains NaN or Inf; FP8 scaling needs a "
                    "finite amax (check for overflow before quantizing)");
  const float scale = fp8::scale_for_amax(amax, fmt);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "quantize_fp8_cuda", [&] {
    quantize_kernel<scalar_t><<<cuda::grid_for(n), cuda::kThreads, 0, stream>>>(
        p.x.data_ptr<scalar_t>(), reinterpret_cast<uint8_t*>(p.q.data_ptr()), n, scale, fmt);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {p.q, at::scalar_tensor(1.0f / scale, p.x.options().dtype(at::kFloat))};
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) { m.impl("quantize_fp8", &quantize_fp8_cuda); }

}  // namespace s_ste
