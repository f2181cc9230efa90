// Portability macros for the per-element math headers: the same source compiles as
// __host__ __device__ code under nvcc and as plain C++ under the host compiler, so the
// CPU kernels, the CUDA kernels and the C++ tests all run one implementation.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define S_STE_HD __host__ __device__ __forceinline__
#define S_STE_UNROLL _Pragma("unroll")
#else
#define S_STE_HD inline
#define S_STE_UNROLL
#endif

namespace s_ste {

// Rounded float32 arithmetic that nvcc may not contract into an FMA: the CPU and CUDA
// paths must produce the same bits, and a fused multiply-add rounds once where the
// host rounds twice.
S_STE_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
S_STE_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
S_STE_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
S_STE_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

S_STE_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return uint32_t(__float_as_uint(x));
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

S_STE_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

S_STE_HD float quiet_nan() { return bits_float(0x7fc00000u); }

// Bits of |x|, with every NaN mapped to 0x7fc00000 (CPU and GPU conversions disagree on NaN
// payloads). As unsigned integers they order like |x| for every non-NaN x and put NaN above
// +Inf, so an integer max over them is an amax that propagates NaN, has the same bits on
// every path and thread layout, and reduces with integer atomics.
S_STE_HD uint32_t abs_bits(float x) { return x != x ? 0x7fc00000u : float_bits(x) & 0x7fffffffu; }

// static_cast<Out>(v) with one NaN encoding on every path: a float32 NaN becomes 0x7fc00000
// and a 16-bit one 0x7FFF (a NaN in both bf16 and fp16, and what the GPU's cvt writes); the
// host's conversions would keep payloads and signs that GPU arithmetic does not produce.
template <typename Out>
S_STE_HD Out to_value(float v) {
  if constexpr (sizeof(Out) == 4) {
    return v != v ? quiet_nan() : v;
  } else if constexpr (sizeof(Out) == 2 && requires(Out o) { o.x = uint16_t(0); }) {
    Out o = static_cast<Out>(v);
    if (v != v) o.x = uint16_t(0x7FFF);
    return o;
  } else {
    return static_cast<Out>(v);
  }
}

}  // namespace s_ste
