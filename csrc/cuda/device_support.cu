// Whether this build has a kernel image the current GPU can run: the element-wise kernels are
// compiled for the architectures of TORCH_CUDA_ARCH_LIST (sm_80 and sm_90a by default), so a
// newer GPU (compute capability 10.x, 12.x) without PTX has none. Every CUDA op asks once per
// device, before its first launch, and raises an error that says what to rebuild, instead of
// "no kernel image is available" from the middle of a training step.
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include <atomic>

#include "device_support.h"

#define S_STE_STR2(...) #__VA_ARGS__
#define S_STE_STR(...) S_STE_STR2(__VA_ARGS__)

namespace s_ste::cuda {
namespace {

__global__ void probe_kernel() {}

constexpr int kMaxDevices = 64;
std::atomic<int> g_state[kMaxDevices];  // 0 unknown, 1 supported, 2 not

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
  if (device >= 0 && device < kMaxDevices && g_state[device].load(std::memory_order_relaxed) == 1) return;
  cudaFuncAttributes attr;
  const cudaError_t err = cudaFuncGetAttributes(&attr, probe_kernel);
  if (err == cudaSuccess) {
    if (device >= 0 && device < kMaxDevices) g_state[device].store(1, std::memory_order_relaxed);
    return;
  }
  (void)cudaGetLastError();  // clear the (non-sticky) error so later CUDA calls do not report it
  cudaDeviceProp prop;
  const bool have_prop = cudaGetDeviceProperties(&prop, device) == cudaSuccess;
  TORCH_CHECK(false, op, ": the s_ste_cuda build has no kernel image for this GPU (",
              have_prop ? prop.name : "device", ", compute capability ", have_prop ? prop.major : -1, ".",
              have_prop ? prop.minor : -1, "): it was compiled for __CUDA_ARCH__ ", built_archs(), " (",
              cudaGetErrorString(err), "). Rebuild with TORCH_CUDA_ARCH_LIST including this GPU, e.g. "
              "TORCH_CUDA_ARCH_LIST=\"8.0;9.0a;", have_prop ? prop.major : 10, ".", have_prop ? prop.minor : 0,
              "\" pip install -e . --no-build-isolation, or run the model on the CPU.");
}

}  // namespace s_ste::cuda
