// Saturating float32 -> FP8 (E4M3FN, E5M2) rounding to nearest even, written out on the
// bits so the CPU and CUDA kernels round identically (and identically to torch's casts).
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace s_ste::fp8 {

struct Format {
  int mant_bits;
  int bias;
  float max;
};
constexpr Format kE4M3{3, 7, 448.0f};
constexpr Format kE5M2{2, 15, 57344.0f};

S_STE_HD float clamp_to(float x, float max) { return x > max ? max : (x < -max ? -max : x); }

// FP8 bit pattern of x: ±Inf and finite overflow saturate to ±max; NaN stays NaN (0x7F with
// x's sign, a NaN in both formats), so an overflowed gradient stays visible.
S_STE_HD uint8_t encode(float x, Format f) {
  const uint32_t sign = (float_bits(x) >> 31) << 7;
  if (x != x) return uint8_t(sign | 0x7Fu);
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
}

// Scale that maps amax onto the format's largest finite value (1 when amax is 0; capped
// at the largest float32 when fp8_max / amax overflows).
S_STE_HD float scale_for_amax(float amax, Format f) {
  if (!(amax > 0.0f)) return 1.0f;
  const float s = div_rn(f.max, amax);
  return s - s == 0.0f ? s : 3.40282347e38f;
}

}  // namespace s_ste::fp8
