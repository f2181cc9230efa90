// Soft-threshold 2:4 pruning of one group of 4 (S-STE), shared by the CPU and CUDA kernels.
// Spec: docs/numerics.md, "soft_threshold_24".
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace s_ste {

// The outcome for one group: which two positions survive (i0 < i1), the threshold t and
// the kept values in float32 (dropped positions are +0).
struct Pruned24 {
  float value[4];
  int i0, i1;
  float t;
};

S_STE_HD float abs_f(float x) { return x < 0.0f ? -x : (x == 0.0f ? 0.0f : x); }

// Element i outranks j when |w_i| > |w_j|, or on equal magnitude when i > j, so exactly
// two elements (those outranking two or more others) survive, even in all-equal groups.
S_STE_HD void top2_positions(const float (&mag)[4], int& i0, int& i1, int& d0, int& d1) {
  int kept[2] = {2, 3}, dropped[2] = {0, 1}, nk = 0, nd = 0;
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) {
    int beaten = 0;
S_STE_UNROLL
    for (int j = 0; j < 4; ++j) {
      if (j != i && (mag[i] > mag[j] || (mag[i] == mag[j] && i > j))) ++beaten;
    }
    if (beaten >= 2) kept[nk++ & 1] = i;
    else dropped[nd++ & 1] = i;
  }
  if (nk != 2) {  // only NaN breaks the total order; keep indices in bounds regardless
    kept[0] = 2, kept[1] = 3, dropped[0] = 0, dropped[1] = 1;
  }
  i0 = kept[0];
  i1 = kept[1];
  d0 = dropped[0];
  d1 = dropped[1];
}

// Kept value sign(w)·(|w| − t), or hard pruning (t = 0, value = w) for the STE recipes.
S_STE_HD Pruned24 prune_group(const float (&w)[4], bool soft) {
  float mag[4];
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) mag[i] = abs_f(w[i]);
  Pruned24 r;
  int d0, d1;
  top2_positions(mag, r.i0, r.i1, d0, d1);
  r.t = soft ? (mag[d0] > mag[d1] ? mag[d0] : mag[d1]) : 0.0f;
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) r.value[i] = 0.0f;
  const int kept[2] = {r.i0, r.i1};
S_STE_UNROLL
  for (int s = 0; s < 2; ++s) {
    const int i = kept[s];
    if (!soft) {
      r.value[i] = w[i];
      continue;
    }
    const float d = sub_rn(mag[i], r.t);  // >= 0: a kept magnitude is never below t
    r.value[i] = d == 0.0f ? 0.0f : (w[i] < 0.0f ? -d : d);
  }
  return r;
}

// The 4-bit CUTLASS code of a group with kept positions i0 < i1.
S_STE_HD uint32_t code24(int i0, int i1) { return uint32_t(i0) | (uint32_t(i1) << 2); }

// Inverse of code24: positions of the two stored values.
S_STE_HD void decode24(uint32_t code, int& i0, int& i1) {
  i0 = int(code & 3u);
  i1 = int((code >> 2) & 3u);
}

}  // namespace s_ste
