#include "layout_rules.h"

#include <c10/util/Exception.h>

#include "s_ste/layout_sm80.cuh"
#include "s_ste/layout_sm90.cuh"

namespace s_ste {

const std::vector<LayoutRules>& all_layout_rules() {
  static const std::vector<LayoutRules> rules{
      {"sm80", c10::kShort, sm80::kMetaCols, /*meta_2d=*/true, sm80::kRowAlign, sm80::kKAlign, /*k_align8=*/0,
       sm80::kGemmRowAlign, sm80::kGemmKAlign, /*gemm_k_align8=*/0, sm80::kGemmTokenAlign, sm80::kWgradTokenPad},
      {"sm90", c10::kByte, sm90::kMetaCols, /*meta_2d=*/false, sm90::kRowAlign, sm90::values_k_align(16),
       sm90::values_k_align(8), sm90::kGemmRowAlign, sm90::gemm_k_align(16), sm90::gemm_k_align(8),
       sm90::kGemmTokenAlign, sm90::kWgradTokenPad},
  };
  return rules;
}

const LayoutRules& rules_of(Layout layout) { return all_layout_rules()[layout == Layout::kSm80 ? 0 : 1]; }

void check_compress_shape(const char* op, Layout layout, int64_t rows, int64_t K, c10::ScalarType value_dtype) {
  const LayoutRules& r = rules_of(layout);
  const int bits = value_bits(value_dtype);
  TORCH_CHECK_VALUE(!known(K) || K > 0, op, ": in_features (K) must be positive, got ", K);
  if (layout == Layout::kSm80) {
    TORCH_CHECK_TYPE(r.k_align(bits) != 0, op, ": layout \"sm80\" holds 16-bit values (no FP8 sparse tensor cores "
                     "before SM90); use layout \"sm90\" for ", value_dtype);
    TORCH_CHECK_VALUE(!known(rows) || (rows > 0 && rows % r.row_align == 0), op,
                      ": layout \"sm80\" needs the row count (out_features) to be a multiple of ", r.row_align,
                      " (CUTLASS SM80 int16 metadata), got ", rows);
    TORCH_CHECK_VALUE(!known(K) || K % r.k_align(bits) == 0, op,
                      ": layout \"sm80\" needs K (in_features) to be a multiple of ", r.k_align(bits), ", got ", K);
  } else {
    TORCH_CHECK_VALUE(!known(rows) || (rows > 0 && rows % r.row_align == 0), op,
                      ": layout \"sm90\" needs at least one row");
    TORCH_CHECK_VALUE(!known(K) || K % r.k_align(bits) == 0, op,
                      ": layout \"sm90\" needs K (in_features) to be a multiple of ", r.k_align(bits), " for ", bits,
                      "-bit values (16-byte rows for TMA), got ", K);
  }
}

c10::ScalarType meta_dtype(Layout layout) { return rules_of(layout).meta_dtype; }

int64_t meta_elements(Layout layout, int64_t rows, int64_t K, c10::ScalarType value_dtype) {
  if (!known(rows) || !known(K)) return ArgSpec::kUnknownSize;
  if (layout == Layout::kSm80) return sm80::meta_elements(rows, K);
  return sm90::meta_bytes(rows, K, value_bits(value_dtype));
}

std::vector<int64_t> meta_shape(Layout layout, int64_t rows, int64_t K, c10::ScalarType value_dtype) {
  if (rules_of(layout).meta_2d) return {rows, K / rules_of(layout).meta_cols};
  return {meta_elements(layout, rows, K, value_dtype)};
}

}  // namespace s_ste
