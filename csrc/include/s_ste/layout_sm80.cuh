// Metadata placement of CUTLASS 2.x's SM80 sparse GEMM (16-bit values, int16 metadata).
// Logical metadata is [rows, K/16]: element (r, c) packs the codes of groups 4c..4c+3 of
// row r, lowest nibble first. CUTLASS stores it ColumnMajorInterleaved<2> after
// reorder_meta (cutlass/util/host_reorder.h): rows are interleaved within blocks of 32 so
// that one mma.sp's metadata is contiguous, and 2x2 blocks are swizzled.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace s_ste::sm80 {

constexpr int kRowAlign = 32;  // rows % 32 == 0 (int16 metadata)
// K % 32 == 0: one int16 holds four groups (16 columns), and ColumnMajorInterleaved<2>
// pairs metadata columns, so their count K/16 must be even.
constexpr int kKAlign = 32;

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
