// The CUTLASS sparse GEMM instantiations of this build, in selection order (each defined in
// its own .cu under csrc/gemm/). sparse_linear_cuda.cpp picks the first that takes a problem.
#include "sparse_gemm.h"

namespace s_ste::gemm {

extern const SparseGemmKernel kSm90Bf16;
extern const SparseGemmKernel kSm90E4m3;
extern const SparseGemmKernel kSm90E5m2E4m3;
extern const SparseGemmKernel kSm80Bf16;
extern const SparseGemmKernel kSm80F16;

const SparseGemmKernel* const* kernels(int* count) {
  static const SparseGemmKernel* const all[] = {&kSm90Bf16, &kSm90E4m3, &kSm90E5m2E4m3, &kSm80Bf16, &kSm80F16};
  *count = static_cast<int>(sizeof(all) / sizeof(all[0]));
  return all;
}

}  // namespace s_ste::gemm
