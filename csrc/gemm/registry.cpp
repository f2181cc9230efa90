// The CUTLASS sparse GEMM instantiations of this build (each defined in its own .cu under
// csrc/gemm/), in the order select.cpp considers them.
#include "sparse_gemm.h"

namespace s_ste::gemm {

extern const SparseGemmKernel kSm90Bf16;
extern const SparseGemmKernel kSm90Bf16Coop256;
extern const SparseGemmKernel kSm90Bf16Pingpong128;
extern const SparseGemmKernel kSm90Bf16Pingpong;
extern const SparseGemmKernel kSm90E4m3;
extern const SparseGemmKernel kSm90E4m3Coop256K;
extern const SparseGemmKernel kSm90E4m3Pingpong;
extern const SparseGemmKernel kSm90E4m3FastCoop128x256;
extern const SparseGemmKernel kSm90E4m3FastCoop256x128;
extern const SparseGemmKernel kSm90E4m3FastPingpong128x128x256;
extern const SparseGemmKernel kSm90E5m2E4m3;
extern const SparseGemmKernel kSm90E5m2E4m3Coop256K;
extern const SparseGemmKernel kSm80Bf16;
extern const SparseGemmKernel kSm80F16;

const SparseGemmKernel* const* kernels(int* count) {
  // Per family and dtype, the kernels that were the whole set before the tuning candidates
  // first (128-row cooperative, then the 64-row Pingpong last among the accurate ones): the
  // heuristic keeps the earlier kernel unless a later one is clearly more wave-efficient
  // (select.cpp), so untuned shapes run what they ran before unless the tile grid says otherwise.
  // The FastAccum kernels are reachable only through a tuning table.
  static const SparseGemmKernel* const all[] = {
      &kSm90Bf16,     &kSm90Bf16Coop256,         &kSm90Bf16Pingpong128,     &kSm90Bf16Pingpong,
      &kSm90E4m3,     &kSm90E4m3Coop256K,        &kSm90E4m3Pingpong,        &kSm90E4m3FastCoop128x256,
      &kSm90E4m3FastCoop256x128, &kSm90E4m3FastPingpong128x128x256,
      &kSm90E5m2E4m3, &kSm90E5m2E4m3Coop256K,
      &kSm80Bf16,     &kSm80F16};
  *count = static_cast<int>(sizeof(all) / sizeof(all[0]));
  return all;
}

}  // namespace s_ste::gemm
