// Metadata placement of CUTLASS 2.x's SM80 sparse GEMM (16-bit values, int16 metadata).
// Logical metadata is [rows, K/16]: element (r, c) packs the codes of groups 4c..4c+3 of
// row r, lowest nibble first. CUTLASS stores it ColumnMajorInterleaved<2> after
// reorder_meta (cutlass/util/host_reorder.h): rows are interleaved within blocks of 32 so
// that one mma.sp's metadata is contiguous, and 2x2 blocks are swizzled.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace s_ste::sm80 {

// The alignment rules of layout "sm80" (csrc/layout_rules.cpp exports them as
// s_ste_cuda.layout_rules(); csrc/gemm/sm80_sparse_gemm.cuh static_asserts the GEMM's).
// A compressed operand [rows, K]:
constexpr int kRowAlign = 32;  // rows % 32 == 0 (int16 metadata)
// K % 32 == 0: one int16 holds four groups (16 columns), and ColumnMajorInterleaved<2>
// pairs metadata columns, so their count K/16 must be even.
constexpr int kKAlign = 32;
constexpr int kMetaCols = 16;  // logical columns per int16 metadata element
// What CUTLASS 2.x's SparseGemm needs of the product out = x · Âᵀ; other problems fall back
// to decompress + dense GEMM:
constexpr int kGemmRowAlign = 32;   // M = out_features (the rows of Â)
constexpr int kGemmKAlign = 64;     // K: the threadblock K (SparseGemm has no K residue)
constexpr int kGemmTokenAlign = 8;  // N = tokens: out [M, N] is written with 128-bit stores
// The weight-gradient GEMM's K is the tokens: they are zero-padded to its K alignment.
constexpr int kWgradTokenPad = kGemmKAlign;

// Elements of the int16 metadata of a [rows, K] operand: logical [rows, K/16].
S_STE_HD constexpr int64_t meta_elements(int64_t rows, int64_t K) { return rows * (K / kMetaCols); }

// Element offset, in the int16 buffer of `rows * (K/16)` elements, of logical (r, c).
S_STE_HD int64_t meta_offset(int64_t r, int64_t c, int64_t rows) {
  int64_t dr = r / 32 * 32 + (r % 8) * 4 + (r % 32) / 8;
  int64_t dc = c;
  if (dr % 2 == 0 && dc % 2 == 1) {
    ++dr;
    --dc;
  } else if (dr % 2 == 1 && dc % 2 == 0) {
    --dr;
    ++dc;
  }
  return (dc / 2) * rows * 2 + dr * 2 + (dc % 2);
}

}  // namespace s_ste::sm80
