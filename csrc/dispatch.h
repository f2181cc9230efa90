// The run-time choices every kernel file makes, turned into compile-time ones: the layout
// (parse_layout, with_layout) and the element types (dispatch_value_type,
// dispatch_float_input, dispatch_compress), so each kernel is a template instantiated for
// the combinations the ops accept.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Float8_e4m3fn.h>
#include <c10/util/Float8_e5m2.h>
#include <c10/util/Half.h>

#include <string_view>
#include <type_traits>

#include "s_ste/fp8.cuh"  // Fp8Kind

namespace s_ste {

enum class Layout { kSm80, kSm90 };

inline Layout parse_layout(const char* op, std::string_view layout) {
  if (layout == "sm80") return Layout::kSm80;
  if (layout == "sm90") return Layout::kSm90;
  TORCH_CHECK_VALUE(false, op, ": layout must be \"sm80\" or \"sm90\", got \"", layout, "\"");
}

inline bool is_fp8(c10::ScalarType t) { return t == c10::kFloat8_e4m3fn || t == c10::kFloat8_e5m2; }

// Calls body(std::true_type) for the SM80 layout, body(std::false_type) for SM90, so a
// kernel templated on the layout is instantiated for both and chosen at run time.
template <typename Body>
void with_layout(Layout layout, Body&& body) {
  if (layout == Layout::kSm80) body(std::true_type{});
  else body(std::false_type{});
}

// Calls body(Out{}, std::integral_constant<int, Fp8Kind>{}) for a compressed-value dtype:
// bf16 / fp16 (kNotFp8) or float8_e4m3fn / float8_e5m2 (kE4M3 / kE5M2).
template <typename Body>
void dispatch_value_type(c10::ScalarType t, Body&& body) {
  switch (t) {
    case c10::kBFloat16: return body(c10::BFloat16{}, std::integral_constant<int, kNotFp8>{});
    case c10::kHalf: return body(c10::Half{}, std::integral_constant<int, kNotFp8>{});
    case c10::kFloat8_e4m3fn: return body(c10::Float8_e4m3fn{}, std::integral_constant<int, kE4M3>{});
    case c10::kFloat8_e5m2: return body(c10::Float8_e5m2{}, std::integral_constant<int, kE5M2>{});
    default: TORCH_CHECK(false, "s_ste: unexpected value dtype ", t);
  }
}

// Calls body(In{}) for the input dtypes the element-wise ops take (float32, bf16, fp16;
// their checks reject the rest): unlike AT_DISPATCH_FLOATING_TYPES_AND2, no double
// instantiation for kernels that move 16-byte words of 2- and 4-byte elements.
template <typename Body>
void dispatch_float_input(c10::ScalarType t, Body&& body) {
  switch (t) {
    case c10::kFloat: return body(float{});
    case c10::kBFloat16: return body(c10::BFloat16{});
    case c10::kHalf: return body(c10::Half{});
    default: TORCH_CHECK(false, "s_ste: unexpected input dtype ", t);
  }
}

// The type dispatch of a compressing kernel: calls body(In{}, Out{}, sm80, fp8) with sm80 a
// std::bool_constant and fp8 the Fp8Kind constant of dispatch_value_type, for every input
// dtype × value dtype × layout except SM80 with FP8 values (the checks reject that pair, so
// no kernel is instantiated for it).
template <typename Body>
void dispatch_compress(c10::ScalarType in, c10::ScalarType out, Layout layout, Body&& body) {
  dispatch_float_input(in, [&](auto in_tag) {
    dispatch_value_type(out, [&](auto out_tag, auto fp8) {
      with_layout(layout, [&](auto sm80) {
        if constexpr (!(std::remove_cvref_t<decltype(sm80)>::value &&
                        std::remove_cvref_t<decltype(fp8)>::value != kNotFp8))
          body(in_tag, out_tag, sm80, fp8);
      });
    });
  });
}

}  // namespace s_ste
