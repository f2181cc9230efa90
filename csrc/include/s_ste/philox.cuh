// Philox-4x32-10 (Salmon et al., SC'11), the counter-based generator behind MVUE sampling:
// any group's random bits depend only on (seed, offset, group index), so the CPU and CUDA
// kernels draw identical samples whatever their thread layout.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace s_ste {

struct Philox4 {
  uint32_t x[4];
};

S_STE_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t& hi) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  hi = uint32_t(p >> 32);
  return uint32_t(p);
}

S_STE_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                               uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
S_STE_UNROLL
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(M0, c0, hi0);
    const uint32_t lo1 = mulhilo32(M1, c2, hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The draw for group `group` of an MVUE call keyed by (seed, offset).
S_STE_HD Philox4 group_random(uint64_t seed, uint64_t offset, uint64_t group) {
  return philox4x32_10(uint32_t(group), uint32_t(group >> 32), uint32_t(offset),
                       uint32_t(offset >> 32), uint32_t(seed), uint32_t(seed >> 32));
}

// Uniform in [0, 1) with 24 random bits: exact in float32.
S_STE_HD float uniform24(uint32_t r) { return float(r >> 8) * (1.0f / 16777216.0f); }

}  // namespace s_ste
