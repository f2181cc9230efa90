// Soft-threshold 2:4 pruning of one group of 4 (S-STE), shared by the CPU and CUDA kernels.
// Spec: docs/numerics.md, "soft_threshold_24".
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace s_ste {

// The outcome for one group: which two positions survive (i0 < i1), the threshold t, the
// kept values in float32 (dropped positions are +0) and the two kept values v0, v1 (those at
// i0, i1). Arrays are only ever indexed by compile-time constants (unrolled loops with
// selects), so a CUDA kernel keeps all of this in registers instead of local memory.
struct Pruned24 {
  float value[4];
  int i0, i1;
  float t;
  float v0, v1;
};

S_STE_HD float abs_f(float x) { return x < 0.0f ? -x : (x == 0.0f ? 0.0f : x); }

// x[i] for a run-time i in [0, 4), without indexing the array at run time.
S_STE_HD float pick4(const float (&x)[4], int i) {
  float v = x[0];
S_STE_UNROLL
  for (int j = 1; j < 4; ++j) v = i == j ? x[j] : v;
  return v;
}

// Element i outranks j when |w_i| > |w_j|, or on equal magnitude when i > j, so exactly
// two elements (those outranking two or more others) survive, even in all-equal groups.
S_STE_HD void top2_positions(const float (&mag)[4], int& i0, int& i1, int& d0, int& d1) {
  int nk = 0, nd = 0;
  i0 = i1 = d0 = d1 = 0;
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) {
    int beaten = 0;
S_STE_UNROLL
    for (int j = 0; j < 4; ++j) {
      if (j != i && (mag[i] > mag[j] || (mag[i] == mag[j] && i > j))) ++beaten;
    }
    if (beaten >= 2) {
      i1 = nk == 0 ? i1 : i;  // kept positions in increasing order
      i0 = nk == 0 ? i : i0;
      ++nk;
    } else {
      d1 = nd == 0 ? d1 : i;
      d0 = nd == 0 ? i : d0;
      ++nd;
    }
  }
  if (nk != 2) {  // only NaN breaks the total order (prune_group then overrides); keep indices in bounds
    i0 = 2, i1 = 3, d0 = 0, d1 = 1;
  }
}

// Kept value sign(w)·(|w| − t), or hard pruning (t = 0, value = w) for the STE recipes.
S_STE_HD Pruned24 prune_group(const float (&w)[4], bool soft) {
  float mag[4];
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) mag[i] = abs_f(w[i]);
  Pruned24 r;
  int d0, d1;
  top2_positions(mag, r.i0, r.i1, d0, d1);
  const float m0 = pick4(mag, d0), m1 = pick4(mag, d1);
  r.t = soft ? (m0 > m1 ? m0 : m1) : 0.0f;
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) {
    float v = 0.0f;
    if (i == r.i0 || i == r.i1) {
      if (!soft) {
        v = w[i];
      } else {
        const float d = sub_rn(mag[i], r.t);  // >= 0: a kept magnitude is never below t
        v = d == 0.0f ? 0.0f : (w[i] < 0.0f ? -d : d);
      }
    }
    r.value[i] = v;
  }
  // A NaN anywhere breaks the ranking (and would be dropped, or flip survivors' signs): the
  // group keeps positions 0 and 1 as NaN, as MVUE marks a non-finite gradient group, so a
  // diverged weight reaches the output as NaN instead of training on as if finite.
  if (w[0] != w[0] || w[1] != w[1] || w[2] != w[2] || w[3] != w[3]) {
    r.i0 = 0, r.i1 = 1;
    r.t = quiet_nan();
    r.value[0] = r.value[1] = quiet_nan();
    r.value[2] = r.value[3] = 0.0f;
  }
  r.v0 = pick4(r.value, r.i0);
  r.v1 = pick4(r.value, r.i1);
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
