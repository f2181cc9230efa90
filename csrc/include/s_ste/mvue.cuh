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

// Index among `idx[0..n)` chosen by inverse-CDF sampling of `a` with threshold u·total;
// falls back to the last index with a > 0 (rounding), else to idx[0].
template <int N>
S_STE_HD int sample_index(const float (&a)[4], const int (&idx)[N], float u, float total) {
  const float t = mul_rn(u, total);
  float prefix = 0.0f;
  int fallback = -1;
S_STE_UNROLL
  for (int s = 0; s < N; ++s) {
    prefix = s == 0 ? a[idx[0]] : add_rn(prefix, a[idx[s]]);
    if (prefix > t) return idx[s];
    if (a[idx[s]] > 0.0f) fallback = idx[s];
  }
  return fallback >= 0 ? fallback : idx[0];
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
S_STE_HD float inclusion_probability(const float (&a)[4], const float (&r)[4], float S, int i) {
  float p = div_rn(a[i], S);
S_STE_UNROLL
  for (int j = 0; j < 4; ++j) {
    if (j == i) continue;
    p = add_rn(p, mul_rn(div_rn(a[j], S), div_rn(a[i], r[j])));
  }
  return p;
}

// out[0..4) = the MVUE sample of g[0..4) for draw `rnd`.
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

  const int all[4] = {0, 1, 2, 3};
  const int first = sample_index(a, all, uniform24(rnd.x[0]), S);
  int rest[3], n = 0;
S_STE_UNROLL
  for (int l = 0; l < 4; ++l)
    if (l != first && n < 3) rest[n++] = l;
  const int second = sample_index(a, rest, uniform24(rnd.x[1]), r[first]);

  const int chosen[2] = {first, second};
S_STE_UNROLL
  for (int s = 0; s < 2; ++s) {
    const int i = chosen[s];
    if (a[i] > 0.0f) out[i] = div_rn(g[i], inclusion_probability(a, r, S, i));
  }
}

}  // namespace s_ste
