// Argument checks shared by the CPU and CUDA implementations of every op. Each error
// names the op and the argument, and every check runs before any kernel launch: a bad
// input must never reach a kernel as an illegal address or a silently wrong answer.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Float8_e4m3fn.h>
#include <c10/util/Float8_e5m2.h>
#include <c10/util/Half.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace s_ste {

enum class Layout { kSm80, kSm90 };

Layout parse_layout(const char* op, std::string_view layout);

// Calls body(std::true_type) for the SM80 layout, body(std::false_type) for SM90, so a
// kernel templated on the layout is instantiated for both and chosen at run time.
template <typename Body>
void with_layout(Layout layout, Body&& body) {
  if (layout == Layout::kSm80) body(std::true_type{});
  else body(std::false_type{});
}

// Calls body(Out{}, std::integral_constant<int, Fp8Kind>{}) for a compressed-value dtype:
// bf16 / fp16 (kNotFp8) or float8_e4m3fn / float8_e5m2 (kE4M3 / kE5M2, see compress.cuh).
template <typename Body>
void dispatch_value_type(c10::ScalarType t, Body&& body) {
  switch (t) {
    case c10::kBFloat16: return body(c10::BFloat16{}, std::integral_constant<int, 0>{});
    case c10::kHalf: return body(c10::Half{}, std::integral_constant<int, 0>{});
    case c10::kFloat8_e4m3fn: return body(c10::Float8_e4m3fn{}, std::integral_constant<int, 1>{});
    case c10::kFloat8_e5m2: return body(c10::Float8_e5m2{}, std::integral_constant<int, 2>{});
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
// dtype × value dtype × layout except SM80 with FP8 values (the plans reject that pair, so
// no kernel is instantiated for it).
template <typename Body>
void dispatch_compress(c10::ScalarType in, c10::ScalarType out, Layout layout, Body&& body) {
  dispatch_float_input(in, [&](auto in_tag) {
    dispatch_value_type(out, [&](auto out_tag, auto fp8) {
      with_layout(layout, [&](auto sm80) {
        if constexpr (!(std::remove_cvref_t<decltype(sm80)>::value && std::remove_cvref_t<decltype(fp8)>::value != 0))
          body(in_tag, out_tag, sm80, fp8);
      });
    });
  });
}

bool is_fp8(c10::ScalarType t);

// What an argument check may read of a tensor: dtype, device, contiguity and sizes, never
// data. The real kernels build one from their tensor (spec_of); the fake kernels build one
// in Python from a FakeTensor or meta tensor (s_ste_cuda.check_args), so both run the same
// checks and raise the same errors. A size the caller cannot know without guarding (a
// symbolic size under torch.compile's dynamic shapes) is kUnknownSize: checks that need it
// are skipped there and run in the real kernel.
struct ArgSpec {
  static constexpr int64_t kUnknownSize = -1;
  c10::ScalarType dtype;
  c10::Device device;
  bool contiguous;
  std::vector<int64_t> sizes;

  int64_t dim() const { return int64_t(sizes.size()); }
  int64_t size(int64_t d) const { return sizes[size_t(d < 0 ? d + dim() : d)]; }
  int64_t numel() const;  // kUnknownSize when any size is unknown
};
ArgSpec spec_of(const at::Tensor& t);
inline bool known(int64_t size) { return size != ArgSpec::kUnknownSize; }
std::string shape_str(const ArgSpec& t);  // "[3, 4]" as torch prints sizes; "?" for an unknown size

// dtype ∈ allowed and contiguous.
void check_tensor(const char* op, const char* name, const ArgSpec& t, std::initializer_list<c10::ScalarType> allowed);
void check_same_device(const char* op, const char* name, const ArgSpec& t, const char* ref_name, const ArgSpec& ref);
void check_same_device(const char* op, const char* name, c10::Device device, const char* ref_name, c10::Device ref);
// Last dimension a positive multiple of `multiple` (4 for groups; more for a layout).
void check_last_dim(const char* op, const char* name, const ArgSpec& t, int64_t multiple, const char* why);
void check_dim(const char* op, const char* name, const ArgSpec& t, int64_t dim);

// The shared checks of an element-wise group op (soft/hard threshold, β, MVUE): float32,
// bfloat16 or float16, contiguous, last dimension a multiple of 4.
void check_group_input(const char* op, const char* name, const ArgSpec& t);

}  // namespace s_ste
