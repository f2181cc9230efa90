// Saturating float32 -> FP8 (E4M3FN, E5M2) rounding to nearest even, written out on the
// bits so the CPU and CUDA kernels round identically (and identically to torch's casts).
#pragma once
#include <cstdint>

#include "hd.cuh"

#if defined(__CUDACC__)
#include <cuda_fp8.h>
#endif

namespace s_ste {

// Which FP8 format a compressing kernel stores its values in: the compile-time tag of the
// value dtype (the op layer's dispatch_value_type passes it; compress.cuh's store_value
// reads it).
enum Fp8Kind : int { kNotFp8 = 0, kE4M3 = 1, kE5M2 = 2 };

}  // namespace s_ste

namespace s_ste::fp8 {

struct Format {
  int mant_bits;
  int bias;
  float max;
};
constexpr Format kE4M3{3, 7, 448.0f};
constexpr Format kE5M2{2, 15, 57344.0f};

S_STE_HD float clamp_to(float x, float max) { return x > max ? max : (x < -max ? -max : x); }

// FP8 bit pattern of x: ±Inf and finite overflow saturate to ±max; every NaN becomes 0x7F
// (a NaN in both formats; its sign is dropped because CPU and GPU arithmetic disagree on the
// sign of the NaNs they generate), so an overflowed gradient stays visible.
S_STE_HD uint8_t encode(float x, Format f) {
  if (x != x) return uint8_t(0x7Fu);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  // Ada/Hopper convert in hardware: cvt.rn.satfinite rounds to nearest even and saturates
  // ±Inf and overflow to ±max, the rounding below, in one instruction (the GPU tests
  // compare the bytes with the CPU path's).
  return uint8_t(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, f.mant_bits == 3 ? __NV_E4M3 : __NV_E5M2));
#else
  const uint32_t sign = (float_bits(x) >> 31) << 7;
  x = clamp_to(x, f.max);
  const uint32_t bits = float_bits(x);
  const uint32_t mag = bits & 0x7fffffffu;
  const int e = int(mag >> 23) - 127;
  uint32_t q;
  if (e < 1 - f.bias) {
    // Below the smallest normal: count multiples of the smallest subnormal, 2^(1-bias-M).
    // Scaling by a power of two is exact, and the result is < 2^M + 1, so the
    // round-half-even below is exact too; q == 2^M lands on the smallest normal's code.
    const float v = mul_rn(bits_float(mag), bits_float(uint32_t(127 + f.bias - 1 + f.mant_bits) << 23));
    q = uint32_t(v);
    const float frac = sub_rn(v, float(q));
    if (frac > 0.5f || (frac == 0.5f && (q & 1u))) ++q;
  } else {
    const int shift = 23 - f.mant_bits;
    const uint32_t mant = mag & 0x7fffffu;
    q = (uint32_t(e + f.bias) << f.mant_bits) | (mant >> shift);
    const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // a carry moves into the exponent
  }
  return uint8_t(sign | q);
#endif
}

// Scale that maps amax onto the format's largest finite value (1 when amax is 0; capped
// at the largest float32 when fp8_max / amax overflows).
S_STE_HD float scale_for_amax(float amax, Format f) {
  if (!(amax > 0.0f)) return 1.0f;
  const float s = div_rn(f.max, amax);
  return s - s == 0.0f ? s : 3.40282347e38f;
}

}  // namespace s_ste::fp8
