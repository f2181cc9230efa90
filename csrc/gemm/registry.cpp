// The CUTLASS sparse GEMM instantiations of this build (each defined in its own .cu under
// csrc/gemm/), in the order select_kernel (select.cpp) considers them.
#include "sparse_gemm.h"

namespace s_ste::gemm {

extern const SparseGemmKernel kSm90Bf16;
extern const SparseGemmKernel kSm90Bf16Pingpong;
extern const SparseGemmKernel kSm90E4m3;
extern const SparseGemmKernel kSm90E4m3Pingpong;
extern const SparseGemmKernel kSm90E5m2E4m3;
extern const SparseGemmKernel kSm80Bf16;
extern const SparseGemmKernel kSm80F16;

const SparseGemmKernel* const* kernels(int* count) {
  // Per family and dtype, large tiles first (select_kernel's rule depends on this order).
  static const SparseGemmKernel* const all[] = {&kSm90Bf16, &kSm90Bf16Pingpong, &kSm90E4m3,   &kSm90E4m3Pingpong,
                                                &kSm90E5m2E4m3, &kSm80Bf16,       &kSm80F16};
  *count = static_cast<int>(sizeof(all) / sizeof(all[0]));
  return all;
}

}  // namespace s_ste::gemm
