// Kernel selection for sparse_linear: plain C++ so the CPU tests can drive it (through
// s_ste_cuda.gemm_select) without a GPU.
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
}  // namespace

const SparseGemmKernel* select_kernel(const SparseLinearArgs& args, bool sm90_layout, Element a, Element b,
                                      int sm_major, int sm_count, std::string* why) {
  int count = 0;
  const SparseGemmKernel* const* all = kernels(&count);
  std::string reasons;
  const SparseGemmKernel* best = nullptr;  // the most tiles so far, for small problems
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
