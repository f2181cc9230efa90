// Kernel selection for sparse_linear: plain C++ so the CPU tests can drive it (through
// s_ste_cuda.gemm_select) without a GPU.
#include <string>

#include "sparse_gemm.h"

namespace s_ste::gemm {

SparseLinearArgs args_for(const SparseGemmKernel& kernel, SparseLinearArgs args) {
  if (!kernel.has_bias) args.bias = nullptr;  // the caller adds it after the GEMM
  return args;
}

const SparseGemmKernel* select_kernel(const SparseLinearArgs& args, bool sm90_layout, Element a, Element b,
                                      int sm_major, std::string* why) {
  int count = 0;
  const SparseGemmKernel* const* all = kernels(&count);
  std::string reasons;
  for (int i = 0; i < count; ++i) {
    const SparseGemmKernel* k = all[i];
    if (k->sm90_layout != sm90_layout || k->a != a || k->b != b) continue;
    std::string reason;
    if (k->sm == 90 && sm_major != 9) {
      reason = "needs an SM90 (Hopper) GPU";
    } else if (sm_major * 10 < k->sm) {
      reason = "needs compute capability >= " + std::to_string(k->sm / 10) + ".0";
    } else if (Status s = k->can_implement(args_for(*k, args))) {
      reason = s;
    } else {
      return k;
    }
    reasons += std::string(reasons.empty() ? "" : "; ") + k->name + ": " + reason;
  }
  if (why) *why = reasons.empty() ? "no kernel for this layout and these dtypes in this build" : reasons;
  return nullptr;
}

}  // namespace s_ste::gemm
