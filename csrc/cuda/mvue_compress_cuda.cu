// CUDA kernel of mvue_24_t_compress: grad_out [T, N] (tokens x out_features, row-major) ->
// the compressed 2:4 operand MVUE(gᵀ) [N, T] of the weight-gradient GEMM, in one pass.
// A block stages a 128-token x 64-column tile of g in shared memory (coalesced loads along
// N), then each thread takes one column n and a 32-token chunk of it (a row chunk of gᵀ),
// runs the shared chunk body (Philox draw + MVUE + compress, s_ste/chunk.cuh, the CPU
// kernel's body) and writes 16 values with 16-byte stores plus their metadata.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <torch/library.h>

#include <algorithm>

#include "../plans.h"
#include "chunk_io.cuh"
#include "kernel_image.h"
#include "launch.cuh"

namespace s_ste {
namespace {

constexpr int kTileN = 64, kTileT = 4 * kChunkCols, kThreads = 256;

template <bool Sm80, int Fp8, typename In, typename Out>
// At least 2 blocks of 256 per SM (<= 128 registers): ptxas then needs ~100 and spills
// nothing; capping at 80 for 3 blocks spilled 30-60 bytes per thread (to measure on a GPU).
__global__ void __launch_bounds__(kThreads, 2)
    mvue_compress_kernel(const In* __restrict__ g, const float* __restrict__ scale_ptr, Out* __restrict__ values,
                         void* __restrict__ meta, float* __restrict__ amax, int64_t T, int64_t N, uint64_t seed,
                         uint64_t offset) {
  __shared__ float tile[kTileT][kTileN];  // [token][column]
  const int64_t tiles_n = (N + kTileN - 1) / kTileN, tiles = tiles_n * ((T + kTileT - 1) / kTileT);
  const float scale = __ldg(scale_ptr);
  // Compute phase: lane -> column (conflict-free shared reads along a tile row), warp ->
  // (column half, token chunk).
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int my_col = (warp % 2) * 32 + lane, my_chunk = warp / 2;
  uint32_t amax_bits = 0;
  for (int64_t tile_id = blockIdx.x; tile_id < tiles; tile_id += gridDim.x) {
    const int64_t n0 = (tile_id % tiles_n) * kTileN, t0 = (tile_id / tiles_n) * kTileT;
    __syncthreads();  // the previous tile's reads are done
    // Load phase: 64 consecutive columns of a token row per 64 threads (coalesced).
    const int lc = threadIdx.x % kTileN;
#pragma unroll 8
    for (int lt = threadIdx.x / kTileN; lt < kTileT; lt += kThreads / kTileN) {
      const int64_t t = t0 + lt, n = n0 + lc;
      tile[lt][lc] = (t < T && n < N) ? static_cast<float>(g[t * N + n]) : 0.0f;
    }
    __syncthreads();
    const int64_t n = n0 + my_col, col0 = t0 + my_chunk * kChunkCols;
    if (n < N && col0 < T) {
      const int ncols = int(std::min<int64_t>(kChunkCols, T - col0));
      float x[kChunkCols];
#pragma unroll
      for (int i = 0; i < kChunkCols; ++i) x[i] = tile[my_chunk * kChunkCols + i][my_col];
      Out v[kChunkCols / 2];
      const uint32_t packed = mvue_compress_chunk<Fp8, In>(x, ncols / 4, seed, offset,
                                                           uint64_t(n * (T / 4) + col0 / 4), scale, v, amax_bits);
      cuda::store_values(values + n * (T / 2) + col0 / 2, ncols / 2, v);
      store_meta_chunk<Sm80, int(8 * sizeof(Out))>(meta, N, T, n, col0, ncols, packed);
    }
  }
  cuda::reduce_amax(amax_bits, amax);  // every thread of the block gets here
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mvue_24_t_compress_cuda(
    const at::Tensor& g_in, int64_t seed, int64_t offset, c10::string_view layout,
    std::optional<c10::ScalarType> out_dtype, const std::optional<at::Tensor>& scale) {
  MvueCompressPlan p = plan_mvue_compress(g_in, seed, offset, layout, out_dtype, scale);
  const c10::cuda::CUDAGuard guard(p.g.device());
  cuda::require_kernel_image("mvue_24_t_compress");
  const int64_t tiles = ((p.N + kTileN - 1) / kTileN) * ((p.T + kTileT - 1) / kTileT);
  // A few resident blocks per SM loop over the tiles: the amax atomics stay per warp, not
  // per tile.
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>(tiles, int64_t(sms) * 4)));
  auto stream = at::cuda::getCurrentCUDAStream();
  dispatch_compress(p.g.scalar_type(), p.values.scalar_type(), p.layout, [&](auto in_tag, auto out_tag, auto sm80, auto fp8) {
    using In = decltype(in_tag);
    using Out = decltype(out_tag);
    mvue_compress_kernel<decltype(sm80)::value, decltype(fp8)::value, In, Out><<<blocks, kThreads, 0, stream>>>(
        p.g.data_ptr<In>(), p.scale.data_ptr<float>(), static_cast<Out*>(p.values.data_ptr()), p.meta.data_ptr(),
        p.amax.data_ptr<float>(), p.T, p.N, p.seed, p.offset);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {p.values, p.meta, p.amax};
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) { m.impl("mvue_24_t_compress", &mvue_24_t_compress_cuda); }

}  // namespace s_ste
