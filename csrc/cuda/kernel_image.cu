// Whether this build has a kernel image the current GPU can run, for the element-wise kernels
// of csrc/cuda/: they are compiled for the architectures of TORCH_CUDA_ARCH_LIST (sm_80 and
// sm_90a by default), so a newer GPU (compute capability 10.x, 12.x) without PTX has none.
// Every CUDA op asks once per device, before its first launch, and raises an error that says
// what to rebuild, instead of "no kernel image is available" from the middle of a training
// step. The check is the GEMMs' (csrc/gemm/sparse_gemm.h): the KernelImage that
// cudaFuncGetAttributes reports for one of this file's kernels, judged by image_verdict as an
// sm_80 kernel's; the verdict is cached per device as image_status caches the GEMMs'.
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include <atomic>

#include "../gemm/sparse_gemm.h"
#include "kernel_image.h"

#define S_STE_STR2(...) #__VA_ARGS__
#define S_STE_STR(...) S_STE_STR2(__VA_ARGS__)

namespace s_ste::cuda {
namespace {

__global__ void probe_kernel() {}

// The image of probe_kernel, built with every other kernel of this extension.
gemm::KernelImage probe_image() {
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, probe_kernel);
  if (err != cudaSuccess) (void)cudaGetLastError();  // not sticky: clear it for the next launch check
  return {err, attr.ptxVersion, attr.binaryVersion};
}

// What image_verdict reads of a kernel: the element-wise kernels need compute capability 8.0.
constexpr gemm::SparseGemmKernel kElementwiseKernels{
    "element-wise kernels", /*sm=*/80, false, gemm::Element::kBF16, gemm::Element::kBF16, gemm::Element::kBF16,
    false, false, 0, 0, 0, nullptr, nullptr, nullptr, &probe_image};

constexpr int kMaxDevices = 64;
std::atomic<bool> g_supported[kMaxDevices];  // a verdict of "runs" is final; a failure is checked again

const char* built_archs() {
#ifdef __CUDA_ARCH_LIST__
  return S_STE_STR(__CUDA_ARCH_LIST__);
#else
  return "(unknown)";
#endif
}

}  // namespace

void require_kernel_image(const char* op) {
  const int device = c10::cuda::current_device();
  const bool cached = device >= 0 && device < kMaxDevices;
  if (cached && g_supported[device].load(std::memory_order_relaxed)) return;
  const gemm::KernelImage image = kElementwiseKernels.image();
  const gemm::Status verdict = gemm::image_verdict(kElementwiseKernels, image);
  if (verdict == nullptr) {
    if (cached) g_supported[device].store(true, std::memory_order_relaxed);
    return;
  }
  cudaDeviceProp prop;
  const bool have_prop = cudaGetDeviceProperties(&prop, device) == cudaSuccess;
  TORCH_CHECK(false, op, ": the s_ste_cuda build has no kernel image for this GPU (",
              have_prop ? prop.name : "device", ", compute capability ", have_prop ? prop.major : -1, ".",
              have_prop ? prop.minor : -1, "): it was compiled for __CUDA_ARCH__ ", built_archs(), " (",
              image.error != cudaSuccess ? cudaGetErrorString(image.error) : verdict,
              "). Rebuild with TORCH_CUDA_ARCH_LIST including this GPU, e.g. "
              "TORCH_CUDA_ARCH_LIST=\"8.0;9.0a;", have_prop ? prop.major : 10, ".", have_prop ? prop.minor : 0,
              "\" pip install -e . --no-build-isolation, or run the model on the CPU.");
}

}  // namespace s_ste::cuda
