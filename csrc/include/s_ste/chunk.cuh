// Chunk-level bodies of the fused kernels, shared by their CPU and CUDA implementations: a
// chunk is kChunkCols (32) logical columns of one row, 8 groups of 4, whose codes fill one
// 32-bit word. The CUDA kernels move whole chunks with 16-byte loads and stores and call
// these on registers; the CPU kernels call them on the same data in memory order. A chunk
// at the end of a row may be shorter (ngroups < 8): the unused groups are skipped.
#pragma once
#include <cstdint>

#include "compress.cuh"
#include "mvue.cuh"

namespace s_ste {

// A chunk: 32 logical columns of one row, 8 groups, whose codes fill one 32-bit word.
constexpr int kChunkCols = 32;
constexpr int kChunkGroups = kChunkCols / 4;

// Writes the metadata of the `ncols` columns [col0, col0 + ncols) of row r; col0 is a
// multiple of kChunkCols and ncols a multiple of the layout's metadata unit (K's alignment
// guarantees it).
template <bool Sm80, int ElemBits>
S_STE_HD void store_meta_chunk(void* meta, int64_t rows, int64_t K, int64_t r, int64_t col0, int ncols,
                               uint32_t packed) {
  if constexpr (Sm80) {
S_STE_UNROLL
    for (int u = 0; u < kChunkCols / sm80::kMetaCols; ++u)
      if (sm80::kMetaCols * u < ncols)
        static_cast<int16_t*>(meta)[sm80::meta_offset(r, col0 / sm80::kMetaCols + u, rows)] =
            static_cast<int16_t>(static_cast<uint16_t>(packed >> (16 * u)));
  } else {
S_STE_UNROLL
    for (int u = 0; u < kChunkCols / sm90::kMetaCols; ++u)
      if (sm90::kMetaCols * u < ncols)
        static_cast<uint8_t*>(meta)[sm90::meta_byte_offset(r, col0 / sm90::kMetaCols + u, rows, K, ElemBits)] =
            static_cast<uint8_t>(packed >> (8 * u));
  }
}

// prune_and_compress of one chunk: threshold (soft: S-STE; else hard, the top-2 magnitudes),
// × beta, cast; returns the packed codes.
template <int Fp8, typename Out>
S_STE_HD uint32_t prune_compress_chunk(const float (&w)[kChunkCols], int ngroups, float beta,
                                       Out (&values)[kChunkCols / 2], bool soft = true) {
  uint32_t packed = 0;
S_STE_UNROLL
  for (int s = 0; s < kChunkGroups; ++s) {
    if (s >= ngroups) break;
    const float g4[4] = {w[4 * s], w[4 * s + 1], w[4 * s + 2], w[4 * s + 3]};
    packed |= prune_compress_group<Fp8>(g4, &values[2 * s], beta, soft) << (4 * s);
  }
  return packed;
}

// The dense chunk of a compressed one, the bytes decompress writes: each group's two values
// at their kept positions, +0 elsewhere (prune_and_compress_dense's ŵ). Indexed by
// compile-time positions only, so a CUDA kernel keeps it in registers.
template <typename Out>
S_STE_HD void dense_chunk(const Out (&values)[kChunkCols / 2], uint32_t packed, int ngroups,
                          Out (&dense)[kChunkCols]) {
S_STE_UNROLL
  for (int s = 0; s < kChunkGroups; ++s) {
    if (s >= ngroups) break;
    int i0, i1;
    decode24((packed >> (4 * s)) & 0xFu, i0, i1);
S_STE_UNROLL
    for (int i = 0; i < 4; ++i) dense[4 * s + i] = i == i0 ? values[2 * s] : (i == i1 ? values[2 * s + 1] : Out{});
  }
}

// One group of mvue_24_t_compress: the MVUE sample of g rounded to T (as mvue_24 returns it
// in its input's dtype), compressed exactly as prune_and_compress compresses that sample
// (with at most two non-zeros the soft threshold is 0, so the kept values are the samples),
// times `scale`. A non-finite group (MVUE writes [NaN, NaN, 0, 0]) keeps positions 0 and 1
// as NaN, where prune_group would drop the NaNs: an overflowed gradient stays visible.
// amax_bits accumulates abs_bits of the rounded samples (a canonical NaN for such a group).
template <int Fp8, typename T, typename Out>
S_STE_HD uint32_t mvue_compress_group(const float (&g)[4], const Philox4& rnd, float scale, Out* values2,
                                      uint32_t& amax_bits) {
  float r[4];
  mvue_group(g, rnd, r);
  if (r[0] != r[0]) {
    amax_bits = amax_bits > 0x7fc00000u ? amax_bits : 0x7fc00000u;
    store_value<Fp8>(values2[0], quiet_nan());
    store_value<Fp8>(values2[1], quiet_nan());
    return code24(0, 1);
  }
  float h[4];
  int nonzero = 0, i0 = 0, i1 = 0;
S_STE_UNROLL
  for (int i = 0; i < 4; ++i) {
    h[i] = static_cast<float>(static_cast<T>(r[i]));
    const uint32_t b = abs_bits(h[i]);
    amax_bits = b > amax_bits ? b : amax_bits;
    if (h[i] != 0.0f) {
      i1 = nonzero == 0 ? i1 : i;
      i0 = nonzero == 0 ? i : i0;
      ++nonzero;
    }
  }
  if (nonzero == 2) {
    // The common case, short-cut: with two non-zeros the ranking keeps exactly them, the
    // threshold is 0 and sign·(|h| − 0) is h itself, so this is prune_compress_group's result.
    store_value<Fp8>(values2[0], mul_rn(pick4(h, i0), scale));
    store_value<Fp8>(values2[1], mul_rn(pick4(h, i1), scale));
    return code24(i0, i1);
  }
  return prune_compress_group<Fp8>(h, values2, scale, true);
}

// mvue_24_t_compress of one chunk: g holds 32 consecutive tokens of one output column, whose
// first group has the flat index group0 in gᵀ (the Philox counter of mvue_24 on gᵀ).
template <int Fp8, typename T, typename Out>
S_STE_HD uint32_t mvue_compress_chunk(const float (&g)[kChunkCols], int ngroups, uint64_t seed, uint64_t offset,
                                      uint64_t group0, float scale, Out (&values)[kChunkCols / 2],
                                      uint32_t& amax_bits) {
  uint32_t packed = 0;
S_STE_UNROLL
  for (int s = 0; s < kChunkGroups; ++s) {
    if (s >= ngroups) break;
    const float g4[4] = {g[4 * s], g[4 * s + 1], g[4 * s + 2], g[4 * s + 3]};
    packed |= mvue_compress_group<Fp8, T>(g4, group_random(seed, offset, group0 + s), scale, &values[2 * s],
                                          amax_bits)
              << (4 * s);
  }
  return packed;
}

}  // namespace s_ste
