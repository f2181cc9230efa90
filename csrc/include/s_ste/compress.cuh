// Compression of one group of 4 (prune, scale, store two values and a 4-bit code) and the
// inverse, decompression per metadata unit (the groups that share one metadata element).
// The fused compressing kernels run whole chunks of groups (chunk.cuh); decompress and
// validate_compressed run one metadata unit per loop step (CPU) or thread (CUDA). Both
// backends call these, so the bytes they write are the same by construction. Element types
// are template parameters (c10::Half, c10::BFloat16, float): anything that converts to and
// from float.
#pragma once
#include <cstdint>

#include "fp8.cuh"
#include "hd.cuh"
#include "layout_sm80.cuh"
#include "layout_sm90.cuh"
#include "soft_threshold.cuh"

namespace s_ste {

// How a float32 value is stored (Fp8 is an Fp8Kind, fp8.cuh): kNotFp8 converts to the 16-bit
// type Out (to_value: one NaN encoding on every path); kE4M3 / kE5M2 write the saturating
// rounding of fp8.cuh into the byte of Out (a plain FP8 conversion would turn overflow into NaN).
template <int Fp8, typename Out>
S_STE_HD void store_value(Out& dst, float v) {
  if constexpr (Fp8 == kNotFp8) {
    dst = to_value<Out>(v);
  } else {
    static_assert(sizeof(Out) == 1, "FP8 values are one byte");
    const uint8_t bits = fp8::encode(v, Fp8 == kE4M3 ? fp8::kE4M3 : fp8::kE5M2);
    if constexpr (requires { dst.x = bits; }) {
      dst.x = bits;  // c10's FP8 types: a member store keeps a register array in registers
    } else {
      *reinterpret_cast<uint8_t*>(&dst) = bits;
    }
  }
}

// Prune one group of 4 (soft: the S-STE threshold; else the top-2 magnitudes, STE), scale by
// beta, write its two kept values to values2[0..2) and return its 4-bit code. A kept zero is
// stored as +0·beta, as the soft threshold yields it (it never writes -0), so a hard prune of
// w compresses to exactly the bytes of compressing hard_threshold_24(w).
template <int Fp8, typename Out>
S_STE_HD uint32_t prune_compress_group(const float (&w)[4], Out* values2, float beta, bool soft) {
  const Pruned24 p = prune_group(w, soft);
  store_value<Fp8>(values2[0], mul_rn(p.v0 == 0.0f ? 0.0f : p.v0, beta));
  store_value<Fp8>(values2[1], mul_rn(p.v1 == 0.0f ? 0.0f : p.v1, beta));
  return code24(p.i0, p.i1);
}

// Scatter `groups` groups' values back to dense positions according to their codes.
template <int Groups, typename T>
S_STE_HD void decompress_groups(const T* values_row, uint32_t packed, T* out_row, int64_t g0) {
S_STE_UNROLL
  for (int s = 0; s < Groups; ++s) {
    const int64_t g = g0 + s;
    int i0, i1;
    decode24((packed >> (4 * s)) & 0xFu, i0, i1);
S_STE_UNROLL
    for (int i = 0; i < 4; ++i) out_row[4 * g + i] = T{};  // +0 in every value type
    out_row[4 * g + i0] = values_row[2 * g];
    out_row[4 * g + i1] = values_row[2 * g + 1];
  }
}

// SM80: one int16 metadata element = 4 groups (16 logical columns).
template <typename T>
S_STE_HD void decompress_meta_unit_sm80(const T* values, const int16_t* meta, T* out, int64_t rows,
                                   int64_t K, int64_t r, int64_t c) {
  const uint32_t packed = static_cast<uint16_t>(meta[sm80::meta_offset(r, c, rows)]);
  decompress_groups<4>(values + r * (K / 2), packed, out + r * K, 4 * c);
}

// SM90: one metadata byte = 2 groups (8 logical columns); k8 indexes those byte columns.
template <typename T>
S_STE_HD void decompress_meta_unit_sm90(const T* values, const uint8_t* meta, T* out, int64_t rows,
                                   int64_t K, int64_t r, int64_t k8) {
  const uint32_t packed = meta[sm90::meta_byte_offset(r, k8, rows, K, int(8 * sizeof(T)))];
  decompress_groups<2>(values + r * (K / 2), packed, out + r * K, 2 * k8);
}

// One entry point for both layouts, indexed by a flat unit number u in
// [0, rows * K / UnitCols): the CPU and CUDA loops run the same body.
template <bool Sm80>
constexpr int kUnitCols = Sm80 ? sm80::kMetaCols : sm90::kMetaCols;  // logical columns of one metadata element

// A code our compressors write: kept positions i0 < i1. Everything else (0x0, which CUTLASS's
// own compressor uses for an all-zero group, 0x1, 0x5, 0xF, ...) would make decompress and
// the GEMMs drop or swap values, so validate_compressed rejects it.
S_STE_HD bool legal_code24(uint32_t code) { return (code & 3u) < ((code >> 2) & 3u); }

// Whether every group code of metadata unit u is legal; `offset` receives the unit's position
// in `meta` (int16 elements for SM80, bytes for SM90), so a caller can find the padding.
template <bool Sm80>
S_STE_HD bool meta_unit_legal(const void* meta, int64_t rows, int64_t K, int elem_bits, int64_t u, int64_t& offset) {
  const int64_t cols = K / kUnitCols<Sm80>, r = u / cols, c = u % cols;
  uint32_t packed;
  if constexpr (Sm80) {
    offset = sm80::meta_offset(r, c, rows);
    packed = static_cast<uint16_t>(static_cast<const int16_t*>(meta)[offset]);
  } else {
    offset = sm90::meta_byte_offset(r, c, rows, K, elem_bits);
    packed = static_cast<const uint8_t*>(meta)[offset];
  }
  bool ok = true;
S_STE_UNROLL
  for (int s = 0; s < kUnitCols<Sm80> / 4; ++s) ok = ok && legal_code24((packed >> (4 * s)) & 0xFu);
  return ok;
}

template <bool Sm80, typename T>
S_STE_HD void decompress_meta_unit(const T* values, const void* meta, T* out, int64_t rows, int64_t K, int64_t u) {
  const int64_t cols = K / kUnitCols<Sm80>, r = u / cols, c = u % cols;
  if constexpr (Sm80) {
    decompress_meta_unit_sm80(values, static_cast<const int16_t*>(meta), out, rows, K, r, c);
  } else {
    decompress_meta_unit_sm90(values, static_cast<const uint8_t*>(meta), out, rows, K, r, c);
  }
}

}  // namespace s_ste
