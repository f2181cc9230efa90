// CUDA kernels of the FP8 casts.
// - quantize_fp8 (current scaling): amax and its finiteness check go through ATen and one
//   host sync (the error must be raised before the cast); a simple cast kernel follows.
// - quantize_fp8_scaled (delayed scaling: the scale is given on the device): one pass that
//   casts, writes the transposed copy the weight-gradient GEMM wants (optional) and reduces
//   amax for the next step's scale, with no host sync.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "../plans.h"
#include "chunk_io.cuh"
#include "kernel_image.h"
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
  cuda::require_kernel_image("quantize_fp8");
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

// ---- quantize_fp8_scaled ----

constexpr int kCastThreads = 256;
constexpr int kCastVec = 16;  // elements per thread step: one 16-byte FP8 store

// Flat cast: each step reads 16 elements with 16-byte loads and writes one 16-byte word.
template <typename In>
__global__ void __launch_bounds__(kCastThreads)
    cast_kernel(const In* __restrict__ x, const float* __restrict__ scale_ptr, uint8_t* __restrict__ q,
                float* __restrict__ amax, int64_t n, fp8::Format fmt) {
  const float scale = __ldg(scale_ptr);
  uint32_t amax_bits = 0;
  const int64_t steps = n / kCastVec;
  for (int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s < steps; s += int64_t(gridDim.x) * blockDim.x) {
    constexpr int kVecs = kCastVec * int(sizeof(In)) / 16;
    uint4 raw[kVecs];
#pragma unroll
    for (int v = 0; v < kVecs; ++v) raw[v] = __ldg(reinterpret_cast<const uint4*>(x + s * kCastVec) + v);
    uint32_t words[4] = {0, 0, 0, 0};
#pragma unroll
    for (int i = 0; i < kCastVec; ++i) {
      const float v = cuda::element<In>(raw, i);
      amax_bits = max(amax_bits, abs_bits(v));
      words[i / 4] |= uint32_t(fp8::encode(mul_rn(v, scale), fmt)) << (8 * (i % 4));
    }
    reinterpret_cast<uint4*>(q)[s] = make_uint4(words[0], words[1], words[2], words[3]);
  }
  // The last n % 16 elements, one per thread of the first block.
  if (blockIdx.x == 0 && threadIdx.x < n % kCastVec) {
    const int64_t i = steps * kCastVec + threadIdx.x;
    const float v = static_cast<float>(x[i]);
    amax_bits = max(amax_bits, abs_bits(v));
    q[i] = fp8::encode(mul_rn(v, scale), fmt);
  }
  cuda::reduce_amax(amax_bits, amax);
}

// Cast + transpose of x [R, C]: a block stages a 64 x 64 tile of FP8 bytes in shared memory
// (row pitch 65 bytes: the column reads below hit distinct banks), writing q's rows on the
// way in and q_t's rows (16 bytes per thread) on the way out.
constexpr int kCastTile = 64, kCastPitch = kCastTile + 1;

template <typename In>
__global__ void __launch_bounds__(kCastThreads)
    cast_transpose_kernel(const In* __restrict__ x, const float* __restrict__ scale_ptr, uint8_t* __restrict__ q,
                          uint8_t* __restrict__ q_t, float* __restrict__ amax, int64_t R, int64_t C,
                          fp8::Format fmt) {
  __shared__ uint8_t tile[kCastTile * kCastPitch];
  const float scale = __ldg(scale_ptr);
  const int64_t tiles_c = (C + kCastTile - 1) / kCastTile, tiles = tiles_c * ((R + kCastTile - 1) / kCastTile);
  const bool vec_out = R % 16 == 0;  // q_t rows start 16-byte aligned
  uint32_t amax_bits = 0;
  for (int64_t tile_id = blockIdx.x; tile_id < tiles; tile_id += gridDim.x) {
    const int64_t c0 = (tile_id % tiles_c) * kCastTile, r0 = (tile_id / tiles_c) * kCastTile;
    __syncthreads();
    const int lc = threadIdx.x % kCastTile;
#pragma unroll 4
    for (int lr = threadIdx.x / kCastTile; lr < kCastTile; lr += kCastThreads / kCastTile) {
      const int64_t r = r0 + lr, c = c0 + lc;
      if (r < R && c < C) {
        const float v = static_cast<float>(x[r * C + c]);
        amax_bits = max(amax_bits, abs_bits(v));
        const uint8_t b = fp8::encode(mul_rn(v, scale), fmt);
        q[r * C + c] = b;
        tile[lr * kCastPitch + lc] = b;
      }
    }
    __syncthreads();
    // Thread -> (column c of x = row of q_t, 16 consecutive rows of x).
    const int tc = threadIdx.x / 4, tr = (threadIdx.x % 4) * 16;
    const int64_t c = c0 + tc, r = r0 + tr;
    if (c < C && r < R) {
      uint8_t* dst = q_t + c * R + r;
      if (vec_out && r + 16 <= R) {
        uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
        for (int i = 0; i < 16; ++i) w[i / 4] |= uint32_t(tile[(tr + i) * kCastPitch + tc]) << (8 * (i % 4));
        *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
      } else {
        for (int i = 0; i < 16 && r + i < R; ++i) dst[i] = tile[(tr + i) * kCastPitch + tc];
      }
    }
  }
  cuda::reduce_amax(amax_bits, amax);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_fp8_scaled_cuda(const at::Tensor& x_in,
                                                                        const at::Tensor& scale_in,
                                                                        c10::ScalarType dtype, bool transpose) {
  QuantizeScaledPlan p = plan_quantize_scaled(x_in, scale_in, dtype, transpose);
  const c10::cuda::CUDAGuard guard(p.x.device());
  cuda::require_kernel_image("quantize_fp8_scaled");
  const fp8::Format fmt = p.e4m3 ? fp8::kE4M3 : fp8::kE5M2;
  const int64_t n = p.x.numel();
  if (n == 0) return {p.q, p.q_t, p.amax};
  // The flat kernel's 16-byte loads need an aligned start; a view at an odd offset is copied
  // (the transposing kernel reads element by element).
  const bool misaligned = reinterpret_cast<uintptr_t>(p.x.data_ptr()) % 16 != 0;
  const at::Tensor x = misaligned && !p.transpose ? p.x.clone() : p.x;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  auto stream = at::cuda::getCurrentCUDAStream();
  dispatch_float_input(x.scalar_type(), [&](auto in_tag) {
    using scalar_t = decltype(in_tag);
    uint8_t* q = reinterpret_cast<uint8_t*>(p.q.data_ptr());
    if (p.transpose) {
      const int64_t tiles = ((p.R + kCastTile - 1) / kCastTile) * ((p.C + kCastTile - 1) / kCastTile);
      const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>(tiles, int64_t(sms) * 8)));
      cast_transpose_kernel<scalar_t><<<blocks, kCastThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), p.scale.data_ptr<float>(), q, reinterpret_cast<uint8_t*>(p.q_t.data_ptr()),
          p.amax.data_ptr<float>(), p.R, p.C, fmt);
    } else {
      const int64_t steps = n / kCastVec;
      const int64_t want = std::max<int64_t>(1, (steps + kCastThreads - 1) / kCastThreads);
      const unsigned blocks = unsigned(std::min<int64_t>(want, int64_t(sms) * 8));
      cast_kernel<scalar_t><<<blocks, kCastThreads, 0, stream>>>(x.data_ptr<scalar_t>(), p.scale.data_ptr<float>(),
                                                                  q, p.amax.data_ptr<float>(), n, fmt);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {p.q, p.q_t, p.amax};
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CUDA, m) {
  m.impl("quantize_fp8", &quantize_fp8_cuda);
  m.impl("quantize_fp8_scaled", &quantize_fp8_scaled_cuda);
}

}  // namespace s_ste
