// Host test of the shared per-element math (csrc/include/s_ste), compiled by the host
// compiler exactly as the CPU kernels compile it: Philox known answers, FP8 rounding,
// the soft threshold and the exactness of MVUE's inclusion probabilities.
#include <cmath>
#include <cstdio>

#include "s_ste/fp8.cuh"
#include "s_ste/mvue.cuh"
#include "s_ste/soft_threshold.cuh"

namespace {
int failures = 0, checks = 0;

void expect(bool ok, const char* what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAILED: %s\n", what);
  }
}

void philox_known_answers() {
  // Random123's published test vectors for philox4x32_10.
  struct Case {
    uint32_t c[4], k[2], r[4];
  } cases[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Case& t : cases) {
    const s_ste::Philox4 r = s_ste::philox4x32_10(t.c[0], t.c[1], t.c[2], t.c[3], t.k[0], t.k[1]);
    for (int i = 0; i < 4; ++i) expect(r.x[i] == t.r[i], "philox known answer");
  }
}

void fp8_rounding() {
  using namespace s_ste::fp8;
  expect(encode(448.0f, kE4M3) == 0x7e, "e4m3 max");
  expect(encode(1e9f, kE4M3) == 0x7e && encode(-1e9f, kE4M3) == 0xfe, "e4m3 saturates");
  expect(encode(1.0f, kE4M3) == 0x38, "e4m3 one");
  expect(encode(1.0625f, kE4M3) == 0x38, "e4m3 tie to even (down)");
  expect(encode(1.1875f, kE4M3) == 0x3a, "e4m3 tie to even (up)");
  expect(encode(0x1p-9f, kE4M3) == 0x01, "e4m3 smallest subnormal");
  expect(encode(0x1p-10f, kE4M3) == 0x00, "e4m3 half the smallest subnormal ties to 0");
  expect(encode(0x1.8p-10f, kE4M3) == 0x01, "e4m3 above the half rounds up");
  expect(encode(0x1.ep-7f, kE4M3) == 0x08, "e4m3 subnormal carries into the smallest normal");
  expect(encode(57344.0f, kE5M2) == 0x7b && encode(1e9f, kE5M2) == 0x7b, "e5m2 max and saturation");
  expect(encode(-1.0f, kE5M2) == 0xbc, "e5m2 minus one");
  expect(encode(0x1p-16f, kE5M2) == 0x01, "e5m2 smallest subnormal");
  expect(encode(s_ste::quiet_nan(), kE4M3) == 0x7f && encode(-s_ste::quiet_nan(), kE5M2) == 0x7f,
         "NaN stays NaN, one encoding whatever its sign");
  expect(s_ste::abs_bits(-s_ste::quiet_nan()) == 0x7fc00000u && s_ste::abs_bits(-2.0f) == 0x40000000u,
         "abs_bits: |x| bits, every NaN as 0x7fc00000");
  expect(encode(-1.0f / 0.0f, kE4M3) == 0xfe, "-Inf saturates");
  expect(scale_for_amax(0.0f, kE4M3) == 1.0f, "scale of amax 0");
  expect(scale_for_amax(1e-40f, kE4M3) == 3.40282347e38f, "scale capped at FLT_MAX");
}

void soft_threshold() {
  const float w[4] = {1.0f, -3.0f, 2.0f, 0.5f};
  const s_ste::Pruned24 p = s_ste::prune_group(w, true);
  expect(p.i0 == 1 && p.i1 == 2 && p.t == 1.0f, "positions and threshold");
  expect(p.value[0] == 0.0f && p.value[1] == -2.0f && p.value[2] == 1.0f && p.value[3] == 0.0f,
         "soft-thresholded values");
  const float ties[4] = {-2.0f, 2.0f, 2.0f, 2.0f};
  const s_ste::Pruned24 q = s_ste::prune_group(ties, true);
  expect(q.i0 == 2 && q.i1 == 3 && !std::signbit(q.value[2]) && q.value[2] == 0.0f,
         "ties to the higher index, +0 results");
  const float nan = s_ste::quiet_nan();
  const float bad[4] = {nan, nan, nan, nan};
  const s_ste::Pruned24 r = s_ste::prune_group(bad, true);
  expect(r.i0 >= 0 && r.i0 < 4 && r.i1 >= 0 && r.i1 < 4, "NaN keeps indices in bounds");
}

void mvue_probabilities() {
  // p_i must equal the exact probability that i is among the two draws: sum over ordered
  // pairs (first, second) of (a_f / S) * (a_s / R_f).
  const float groups[][4] = {{1.0f, 0.5f, 0.25f, 0.125f}, {1.0f, 1.0f, 1.0f, 1.0f}, {1.0f, 1e-3f, 0.0f, 0.3f}};
  for (const auto& a : groups) {
    float r[4];
    const float S = a[0] + a[1] + a[2] + a[3];
    for (int j = 0; j < 4; ++j) r[j] = s_ste::sum_others(a, j);
    double total = 0;
    for (int i = 0; i < 4; ++i) {
      if (a[i] == 0.0f) continue;
      double exact = 0;
      for (int f = 0; f < 4; ++f)
        for (int s = 0; s < 4; ++s)
          if (f != s && (f == i || s == i)) exact += double(a[f]) / S * (double(a[s]) / r[f]);
      const float p = s_ste::inclusion_probability(a, r, S, i);
      expect(std::fabs(p - exact) <= 1e-6 * exact, "inclusion probability is exact");
      total += p;
    }
    expect(std::fabs(total - 2.0) < 1e-5, "two survivors in expectation");
  }
  // A lone non-zero is kept with probability 1 and returned unchanged.
  const float lone[4] = {0.0f, 0.0f, -3.0f, 0.0f};
  float out[4];
  s_ste::mvue_group(lone, s_ste::group_random(1, 2, 3), out);
  expect(out[2] == -3.0f && out[0] == 0.0f && out[1] == 0.0f && out[3] == 0.0f, "lone non-zero");
}
}  // namespace

int main() {
  philox_known_answers();
  fp8_rounding();
  soft_threshold();
  mvue_probabilities();
  std::printf("math: %d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
