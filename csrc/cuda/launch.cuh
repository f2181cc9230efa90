// Launch helpers for the simple grid-stride CUDA kernels (one thread per group or
// metadata unit): the per-element arithmetic lives in csrc/include/s_ste/.
#pragma once
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>

namespace s_ste::cuda {

constexpr int kThreads = 256;

inline dim3 grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  // Grid-stride loops cover the rest; 64K blocks keep every SM busy.
  return dim3(static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535))));
}

#define S_STE_GRID_STRIDE(i, n)                                                   \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

}  // namespace s_ste::cuda
