// CUDA kernel of mvue_24: one thread per group, same Philox draw and MVUE arithmetic as
// the CPU kernel (csrc/cpu/mvue_cpu.cpp), hence the same bits for the same (seed, offset).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../plans.h"
#include "kernel_image.h"
#include "launch.cuh"
#include "s_ste/mvue.cuh"

namespace s_ste {
namespace {

template <typename T>
__global__ void mvue_kernel(const T* __restrict__ g, T* __restrict__ out, int64_t groups, uint64_t seed,
                            uint64_t offset) {
  S_STE_GRID_STRIDE(grp, groups) {
    float v[4], r[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = static_cast<float>(g[4 * grp + i]);
    mvue_group(v, group_random(seed, offset, uint64_t(grp)), r);
#pragma unroll
    for (int i = 0; i < 4; ++i) out[4 * grp + i] = to_value<T>(r[i]);
  }
}

at::Tensor mvue_24_cuda(const at::Tensor& g_in, int64_t seed, int64_t offset) {
  MvuePlan p = plan_mvue(g_in, seed, offset);
  const c10::cuda::CUDAGuard guard(p.g.device());
  cuda::require_kernel_image("mvue_24");
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.g.scalar_type(), "mvue_24_cuda", [&] {
    mvue_kernel<scalar_t><<<cuda::grid_for(p.groups), cuda::kThreads, 0, stream>>>(
        p.g.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(), p.groups, p.seed, p.offset);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) { m.impl("mvue_24", &mvue_24_cuda); }

}  // namespace s_ste
