// Kernel selection for sparse_linear: plain C++ so the CPU tests can drive it (through
// s_ste_cuda.gemm_select and tests/cpp/test_gemm_select.cpp) without a GPU.
#include <atomic>
#include <cstdint>
#include <string>

#include "sparse_gemm.h"

namespace s_ste::gemm {

SparseLinearArgs args_for(const SparseGemmKernel& kernel, SparseLinearArgs args) {
  if (!kernel.has_bias) args.bias = nullptr;  // the caller adds it after the GEMM
  return args;
}

namespace {
std::atomic<const char*> g_last_kernel{nullptr};
}  // namespace

void record_last_kernel(const char* name) { g_last_kernel.store(name, std::memory_order_relaxed); }
const char* last_kernel() { return g_last_kernel.load(std::memory_order_relaxed); }

namespace {
int64_t tile_count(const SparseGemmKernel& k, const SparseLinearArgs& args) {
  return ((args.M + k.tile_m - 1) / k.tile_m) * ((args.N + k.tile_n - 1) / k.tile_n);
}

// The architectures this build holds images of: SM90 kernels run on 9.x only (sm_90a code);
// SM80 kernels on 8.x (sm_80 code) and 9.x (their sm_90a image). Nothing runs on 10.x/12.x
// (Blackwell): no image, and sm_90a code cannot run there. nullptr if `k` may run on
// compute capability major `sm_major`.
Status architecture_rule(const SparseGemmKernel& k, int sm_major) {
  if (k.sm == 90) return sm_major == 9 ? nullptr : "needs an SM90 (Hopper) GPU";
  if (sm_major < k.sm / 10) return k.sm == 80 ? "needs compute capability >= 8.0" : "needs a newer GPU";
  if (sm_major > 9) return "this build holds sm_80 and sm_90a images only: none runs on compute capability 10.x and newer";
  return nullptr;
}

// image_status's cache: one slot per (device, registry index); nullptr = not checked yet.
constexpr int kCachedDevices = 64;
constexpr int kCachedKernels = 32;
const char kImageOk[] = "ok";
std::atomic<const char*> g_image_cache[kCachedDevices][kCachedKernels];

int registry_index(const SparseGemmKernel& kernel) {
  int count = 0;
  const SparseGemmKernel* const* all = kernels(&count);
  for (int i = 0; i < count; ++i)
    if (all[i] == &kernel) return i;
  return -1;
}
}  // namespace

Status image_verdict(const SparseGemmKernel& kernel, const KernelImage& image) {
  if (image.error == cudaErrorNoKernelImageForDevice || image.error == cudaErrorInvalidDeviceFunction)
    return "no image of this kernel for this GPU in this build (TORCH_CUDA_ARCH_LIST / the GEMM archive's "
           "architectures do not include it)";
  if (image.error != cudaSuccess) return "cudaFuncGetAttributes failed on this kernel";
  if (kernel.sm == 90 && (image.ptx_version != 90 || image.binary_version != 90))
    return "its image is not sm_90a code (JIT-compiled from the PTX of another architecture, e.g. a build with "
           "TORCH_CUDA_ARCH_LIST=\"8.0+PTX\"; CUTLASS's SM90 kernels compiled so compute nothing): rebuild with 9.0a";
  if (image.ptx_version < kernel.sm)
    return "its image was compiled for an architecture older than the kernel needs";
  return nullptr;
}

Status image_status(const SparseGemmKernel& kernel, int device) {
  const int index = registry_index(kernel);
  const bool cached = device >= 0 && device < kCachedDevices && index >= 0 && index < kCachedKernels;
  if (cached) {
    if (const char* known = g_image_cache[device][index].load(std::memory_order_acquire))
      return known == kImageOk ? nullptr : known;
  }
  const KernelImage image = kernel.image();
  const Status verdict = image_verdict(kernel, image);
  // A failure other than "no image" (e.g. a sticky error of the context) says nothing about
  // the image: check again next time.
  const bool final_answer = image.error == cudaSuccess || image.error == cudaErrorNoKernelImageForDevice ||
                            image.error == cudaErrorInvalidDeviceFunction;
  if (cached && final_answer) g_image_cache[device][index].store(verdict ? verdict : kImageOk, std::memory_order_release);
  return verdict;
}

const SparseGemmKernel* select_kernel(const SparseLinearArgs& args, bool sm90_layout, Element a, Element b,
                                      int sm_major, int sm_count, std::string* why, int device) {
  int count = 0;
  const SparseGemmKernel* const* all = kernels(&count);
  std::string reasons;
  const SparseGemmKernel* best = nullptr;  // the most tiles so far, for small problems
  for (int i = 0; i < count; ++i) {
    const SparseGemmKernel* k = all[i];
    if (k->sm90_layout != sm90_layout || k->a != a || k->b != b) continue;
    std::string reason;
    if (Status s = architecture_rule(*k, sm_major)) {
      reason = s;
    } else if (Status s = k->can_implement(args_for(*k, args))) {
      reason = s;
    } else if (Status s = device >= 0 ? image_status(*k, device) : nullptr) {
      reason = s;
    } else {
      // Wave quantization: a tile grid smaller than the GPU leaves SMs idle, so small
      // problems take the kernel with smaller tiles (more CTAs). Untuned: a first rule until
      // bench/bench_gemm.py measures the crossover on a GPU.
      if (tile_count(*k, args) >= sm_count) return k;
      if (best == nullptr || tile_count(*k, args) > tile_count(*best, args)) best = k;
      continue;
    }
    reasons += std::string(reasons.empty() ? "" : "; ") + k->name + ": " + reason;
  }
  if (best) return best;
  if (why) *why = reasons.empty() ? "no kernel for this layout and these dtypes in this build" : reasons;
  return nullptr;
}

}  // namespace s_ste::gemm
