// On a Hopper GPU: what cudaFuncGetAttributes reports for a kernel of this build, and
// image_verdict's answer for an SM90 kernel with that image. CMake builds this file twice:
// test_kernel_image_sm90a (sm_90a SASS: must be accepted) and test_kernel_image_ptx80
// (compute_80 PTX only, which the driver JIT-compiles: must be rejected, as a CUTLASS SM90
// kernel of an "8.0+PTX" build would be). Exit 77 (skipped) without a Hopper GPU.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

#include "sparse_gemm.h"

#ifndef S_STE_EXPECT_ACCEPTED
#error "define S_STE_EXPECT_ACCEPTED to 0 or 1"
#endif

__global__ void probe_kernel(int* out) {
  if (out) *out = 1;
}

namespace s_ste::gemm {
namespace {
Status accept(const SparseLinearArgs&) { return nullptr; }
size_t no_workspace(const SparseLinearArgs&) { return 0; }
KernelImage probe_image() {
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, probe_kernel);
  if (err != cudaSuccess) (void)cudaGetLastError();
  return KernelImage{err, attr.ptxVersion, attr.binaryVersion};
}
const SparseGemmKernel kProbe{"probe_sm90", 90, true, Element::kBF16, Element::kBF16, Element::kBF16, true, false,
                              128, 128, 128, &accept, &no_workspace, &accept, &probe_image};
}  // namespace

const SparseGemmKernel* const* kernels(int* count) {
  static const SparseGemmKernel* const all[] = {&kProbe};
  *count = 1;
  return all;
}
}  // namespace s_ste::gemm

int main() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess || major != 9) {
    std::printf("test_kernel_image: no Hopper GPU, skipped\n");
    return 77;
  }
  const s_ste::gemm::KernelImage image = s_ste::gemm::kProbe.image();
  std::printf("cudaFuncGetAttributes: %s, ptxVersion %d, binaryVersion %d\n", cudaGetErrorString(image.error),
              image.ptx_version, image.binary_version);
  const s_ste::gemm::Status verdict = s_ste::gemm::image_status(s_ste::gemm::kProbe, device);
  std::printf("verdict: %s\n", verdict ? verdict : "accepted");
  const bool accepted = verdict == nullptr;
  if (accepted != bool(S_STE_EXPECT_ACCEPTED)) {
    std::printf("FAIL: expected the image to be %s\n", S_STE_EXPECT_ACCEPTED ? "accepted" : "rejected");
    return 1;
  }
  return 0;
}
