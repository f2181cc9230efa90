#include "arg_spec.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace s_ste {

namespace {
std::string dtype_list(std::initializer_list<c10::ScalarType> allowed) {
  std::ostringstream os;
  const char* sep = "";
  for (auto t : allowed) {
    os << sep << c10::toString(t);
    sep = ", ";
  }
  return os.str();
}
}  // namespace

int64_t ArgSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : sizes) {
    if (!known(s)) return kUnknownSize;
    n *= s;
  }
  return n;
}

ArgSpec spec_of(const at::Tensor& t) {
  return {t.scalar_type(), t.device(), t.is_contiguous(), std::vector<int64_t>(t.sizes().begin(), t.sizes().end())};
}

std::string shape_str(const ArgSpec& t) {
  std::ostringstream os;
  os << "[";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i) os << ", ";
    if (known(t.sizes[i])) os << t.sizes[i];
    else os << "?";
  }
  os << "]";
  return os.str();
}

void check_tensor(const char* op, const char* name, const ArgSpec& t, std::initializer_list<c10::ScalarType> allowed) {
  bool ok = false;
  for (auto s : allowed) ok = ok || t.dtype == s;
  TORCH_CHECK_TYPE(ok, op, ": ", name, " must have dtype ", dtype_list(allowed), ", got ", t.dtype);
  TORCH_CHECK_VALUE(t.contiguous, op, ": ", name, " must be contiguous (call .contiguous())");
}

void check_same_device(const char* op, const char* name, c10::Device device, const char* ref_name, c10::Device ref) {
  TORCH_CHECK_VALUE(device == ref, op, ": ", name, " is on ", device, " but ", ref_name, " is on ", ref,
                    "; move them to one device");
}

void check_same_device(const char* op, const char* name, const ArgSpec& t, const char* ref_name, const ArgSpec& ref) {
  check_same_device(op, name, t.device, ref_name, ref.device);
}

void check_last_dim(const char* op, const char* name, const ArgSpec& t, int64_t multiple, const char* why) {
  TORCH_CHECK_VALUE(t.dim() >= 1, op, ": ", name, " must have at least one dimension");
  const int64_t K = t.size(-1);
  TORCH_CHECK_VALUE(!known(K) || (K > 0 && K % multiple == 0), op, ": ", name,
                    ".shape[-1] must be a positive multiple of ", multiple, " (", why, "), got ", K);
}

void check_dim(const char* op, const char* name, const ArgSpec& t, int64_t dim) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must be ", dim, "-D, got shape ", shape_str(t));
}

void check_group_input(const char* op, const char* name, const ArgSpec& t) {
  check_tensor(op, name, t, {c10::kFloat, c10::kBFloat16, c10::kHalf});
  check_last_dim(op, name, t, 4, "2:4 groups run along the last dimension");
}

}  // namespace s_ste
