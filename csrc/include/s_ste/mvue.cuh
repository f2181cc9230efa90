// MVUE 2:4 sparsification of one group of 4 gradient values (unbiased: E[out] = g).
// Spec: docs/numerics.md, "mvue_24". Every float operation is written out in the spec's
// order with non-contracting helpers so the CPU and CUDA kernels agree bit for bit.
#pragma once
#include <cstdint>

#include "hd.cuh"
#include "philox.cuh"
#include "soft_threshold.cuh"

namespace s_ste {

S_STE_HD bool finite_f(float x) { return x - x == 0.0f; }  // false for NaN and ±Inf

// Slot among v[0..N) chosen by inverse-CDF sampling with threshold u·total: the first slot
// whose running sum exceeds it; on rounding, the last slot with v > 0, else slot 0.
template <int N>
S_STE_HD int sample_slot(const float (&v)[N], float u, float total) {
  const float t = mul_rn(u, total);
  float prefix = 0.0f;
  int fallback = -1, chosen = -1;
S_STE_UNROLL
  for (int s = 0; s < N; ++s) {
    prefix = s == 0 ? v[0] : add_rn(prefix, v[s]);
    if (chosen < 0 && prefix > t) chosen = s;
    if (v[s] > 0.0f) fallback = s;
  }
  if (chosen >= 0) return chosen;
  return fallback >= 0 ? fallback : 0;
}

// Sum of the a's other than a[j], in increasing index order.
S_STE_HD float sum_others(const float (&a)[4], int j) {
  float s = 0.0f;
  bool first = true;
S_STE_UNROLL
  for (int l = 0; l < 4; ++l) {
    if (l == j) continue;
    s = first ? a[l] : add_rn(s, a[l]);
    first = false;
  }
  return s;
}

// Probability that sampling two without replacement (first ∝ a, second ∝ a among the
// rest) includes i: a_i/S + Σ_{j≠i} (a_j/S)·(a_i/R_j), with R_j = S − a_j summed directly.
// a_over_s[j] = a_j / S, computed once per group for both survivors. The three j ≠ i are
// visited in increasing order as slots s = 0..2 (j = s, or s + 1 past i): every thread of a
// warp runs the same three divisions whatever its i.
S_STE_HD float inclusion_probability(const float (&a)[4], const float (&a_over_s)[4], const float (&r)[4],
                                     int i) {
  const float ai = pick4(a, i);
  float p = pick4(a_over_s, i);
S_STE_UNROLL
  for (int s = 0; s < 3; ++s) {
    const int j = s < i ? s : s + 1;
    p = add_rn(p, mul_rn(pick4(a_over_s, j), div_rn(ai, pick4(r, j))));
  }
  return p;
}

S_STE_HD float inclusion_probability(const float (&a)[4], const float (&r)[4], float S, int i) {
  float a_over_s[4];
S_STE_UNROLL
  for (int j = 0; j < 4; ++j) a_over_s[j] = div_rn(a[j], S);
  return inclusion_probability(a, a_over_s, r, i);
}

// out[0..4) = the MVUE sample of g[0..4) for draw `rnd`. Arrays are indexed by compile-time
// constants only (selects instead of run-time indices): registers, not local memory, on GPU.
S_STE_HD void mvue_group(const float (&g)[4], const Philox4& rnd, float (&out)[4]) {
  float m = 0.0f;
  bool finite = true;
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) {
    out[i] = 0.0f;
    const float ag = abs_f(g[i]);
    finite = finite && finite_f(ag);
    m = ag > m ? ag : m;
  }
  if (!finite) {  // an overflowed gradient stays visible to loss scalers
    out[0] = out[1] = quiet_nan();
    return;
  }
  if (m == 0.0f) return;
  float a[4], r[4];
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) a[i] = div_rn(abs_f(g[i]), m);
  const float S = add_rn(add_rn(add_rn(a[0], a[1]), a[2]), a[3]);
S_STE_UNROLL
  for (int j = 0; j < 4; ++j) r[j] = sum_others(a, j);

  const int first = sample_slot(a, uniform24(rnd.x[0]), S);
  // The other three indices in increasing order: slot s holds index s, or s + 1 past first.
  float rest[3];
S_STE_UNROLL
  for (int s = 0; s < 3; ++s) rest[s] = s < first ? a[s] : a[s + 1];
  const int slot = sample_slot(rest, uniform24(rnd.x[1]), pick4(r, first));
  const int second = slot < first ? slot : slot + 1;

  float a_over_s[4];
S_STE_UNROLL
  for (int j = 0; j < 4; ++j) a_over_s[j] = div_rn(a[j], S);
  // The two survivors in turn (a run-time index, so a warp divides twice, not per position).
S_STE_UNROLL
  for (int k = 0; k < 2; ++k) {
    const int i = k == 0 ? first : second;
    if (pick4(a, i) > 0.0f) {
      const float v = div_rn(pick4(g, i), inclusion_probability(a, a_over_s, r, i));
S_STE_UNROLL
      for (int l = 0; l < 4; ++l) out[l] = l == i ? v : out[l];
    }
  }
}

}  // namespace s_ste
