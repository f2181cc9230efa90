// The Element tag (sparse_gemm.h) of a CUTLASS element type, so each registry entry derives
// its dtypes from the instantiation itself instead of restating them.
#pragma once
#include <type_traits>

#include "cutlass/numeric_types.h"
#include "sparse_gemm.h"

namespace s_ste::gemm {

template <typename T>
constexpr Element element_of() {
  if constexpr (std::is_same_v<T, cutlass::bfloat16_t>) return Element::kBF16;
  else if constexpr (std::is_same_v<T, cutlass::half_t>) return Element::kF16;
  else if constexpr (std::is_same_v<T, cutlass::float_e4m3_t>) return Element::kE4M3;
  else {
    static_assert(std::is_same_v<T, cutlass::float_e5m2_t>, "no Element tag for this CUTLASS type");
    return Element::kE5M2;
  }
}

}  // namespace s_ste::gemm
