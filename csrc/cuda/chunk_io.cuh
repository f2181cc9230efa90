// Register <-> global memory moves of the fused kernels: a chunk (32 logical columns of a
// row) is read with 16-byte loads and its 16 compressed values written with 16-byte stores
// when it is whole, element by element when it is the short end of a row. The arithmetic on
// the registers comes from s_ste/chunk.cuh, shared with the CPU kernels.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "s_ste/chunk.cuh"

namespace s_ste::cuda {

// Element i of a 16-byte-loaded array of In (float, or a c10 16-bit type holding its bits in .x).
template <typename In, int N>
__device__ __forceinline__ float element(const uint4 (&raw)[N], int i) {
  const uint4& v = raw[i * int(sizeof(In)) / 16];
  const int word = (i * int(sizeof(In)) % 16) / 4;
  const uint32_t w = word == 0 ? v.x : word == 1 ? v.y : word == 2 ? v.z : v.w;
  if constexpr (sizeof(In) == 4) {
    return __uint_as_float(w);
  } else {
    In e;
    e.x = uint16_t(w >> (16 * (i % 2)));
    return static_cast<float>(e);
  }
}

// x[0..32) = the chunk at p (ncols valid columns, the rest 0). p is 16-byte aligned when
// the chunk is whole (the launchers guarantee it).
template <typename In>
__device__ __forceinline__ void load_chunk(const In* __restrict__ p, int ncols, float (&x)[kChunkCols]) {
  if (ncols == kChunkCols) {
    constexpr int kVecs = kChunkCols * int(sizeof(In)) / 16;
    uint4 raw[kVecs];
#pragma unroll
    for (int v = 0; v < kVecs; ++v) raw[v] = __ldg(reinterpret_cast<const uint4*>(p) + v);
#pragma unroll
    for (int i = 0; i < kChunkCols; ++i) x[i] = element<In>(raw, i);
  } else {
#pragma unroll
    for (int i = 0; i < kChunkCols; ++i) x[i] = i < ncols ? static_cast<float>(p[i]) : 0.0f;
  }
}

// Raw bits of a c10 value type (BFloat16, Half, Float8_*: all hold them in .x).
template <typename Out>
__device__ __forceinline__ uint32_t raw_bits(const Out& v) {
  return uint32_t(v.x);
}

// p[0..nvals) = v[0..nvals); 16-byte stores when all kN values are written (p aligned): a
// chunk's 16 compressed values, or its 32 dense ones.
template <typename Out, int kN>
__device__ __forceinline__ void store_values(Out* __restrict__ p, int nvals, const Out (&v)[kN]) {
  constexpr int kBytes = kN * int(sizeof(Out));
  static_assert(kBytes % 16 == 0, "whole 16-byte stores");
  if (nvals == kN) {
    uint32_t words[kBytes / 4];
#pragma unroll
    for (int w = 0; w < kBytes / 4; ++w) {
      uint32_t acc = 0;
#pragma unroll
      for (int b = 0; b < 4 / int(sizeof(Out)); ++b)
        acc |= raw_bits(v[w * (4 / int(sizeof(Out))) + b]) << (8 * int(sizeof(Out)) * b);
      words[w] = acc;
    }
#pragma unroll
    for (int s = 0; s < kBytes / 16; ++s)
      reinterpret_cast<uint4*>(p)[s] = make_uint4(words[4 * s], words[4 * s + 1], words[4 * s + 2], words[4 * s + 3]);
  } else {
#pragma unroll
    for (int i = 0; i < kN; ++i)
      if (i < nvals) p[i] = v[i];
  }
}

// Max over a warp, then one atomic per warp: amax as the integer max of abs_bits
// (hd.cuh), so NaN propagates and the result does not depend on the order.
__device__ __forceinline__ void reduce_amax(uint32_t bits, float* amax) {
  bits = __reduce_max_sync(0xffffffffu, bits);
  if ((threadIdx.x & 31) == 0 && bits != 0) atomicMax(reinterpret_cast<unsigned int*>(amax), bits);
}

}  // namespace s_ste::cuda
