// THE alignment rules of the two compressed layouts and of their GEMMs, in one table: the
// argument checks, the plans and (through s_ste_cuda.layout_rules()) the Python layer read
// it. Its numbers are the constants of s_ste/layout_sm80.cuh and s_ste/layout_sm90.cuh,
// which the GEMM headers static_assert against.
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

#include "arg_spec.h"
#include "dispatch.h"

namespace s_ste {

struct LayoutRules {
  const char* name;            // "sm80" / "sm90"
  c10::ScalarType meta_dtype;  // int16 / uint8
  int meta_cols;               // logical columns (of K) one metadata element covers
  bool meta_2d;                // metadata [rows, K / meta_cols] (sm80), else padded bytes, 1-D (sm90)
  // A compressed operand [rows, K] (K the 2:4 dimension): rows a multiple of row_align, K of
  // k_align(value bits); k_align is 0 for a value width the layout does not hold.
  int row_align;
  int k_align16, k_align8;
  // What the layout's CUTLASS GEMM needs of out = x · Âᵀ (M = out_features, K, tokens);
  // other problems fall back to decompress + dense GEMM.
  int gemm_row_align;
  int gemm_k_align16, gemm_k_align8;
  int gemm_token_align;
  // The weight-gradient GEMM's K is the tokens: they are zero-padded to this.
  int wgrad_token_pad;

  int k_align(int bits) const { return bits == 8 ? k_align8 : k_align16; }
  int gemm_k_align(int bits) const { return bits == 8 ? gemm_k_align8 : gemm_k_align16; }
};

// Both layouts, in the order of Layout.
const std::vector<LayoutRules>& all_layout_rules();
const LayoutRules& rules_of(Layout layout);
inline int value_bits(c10::ScalarType t) { return int(8 * c10::elementSize(t)); }

// The value dtypes each layout holds, and its shape rules (rows or K may be unknown).
void check_compress_shape(const char* op, Layout layout, int64_t rows, int64_t K, c10::ScalarType value_dtype);
c10::ScalarType meta_dtype(Layout layout);
// The metadata of a [rows, K] operand: its element count (unknown if rows or K is) and the
// shape the kernels allocate (sm80: [rows, K/16]; sm90: the padded bytes, 1-D).
int64_t meta_elements(Layout layout, int64_t rows, int64_t K, c10::ScalarType value_dtype);
std::vector<int64_t> meta_shape(Layout layout, int64_t rows, int64_t K, c10::ScalarType value_dtype);

}  // namespace s_ste
