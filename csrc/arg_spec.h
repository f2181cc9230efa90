// What an argument check may read of a tensor (ArgSpec: dtype, device, contiguity and sizes,
// never data), and the checks shared by every op's (op_checks.h). Each error names the op and
// the argument.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace s_ste {

// The real kernels build one from their tensor (spec_of); the fake kernels build one in
// Python from a FakeTensor or meta tensor (s_ste_cuda.check_args), so both run the same
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

// The input of an element-wise group op (soft/hard threshold, β, MVUE): float32, bfloat16
// or float16, contiguous, last dimension a multiple of 4.
void check_group_input(const char* op, const char* name, const ArgSpec& t);

}  // namespace s_ste
