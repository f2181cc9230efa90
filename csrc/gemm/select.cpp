// Kernel selection for sparse_linear: plain C++ so the CPU tests can drive it (through
// s_ste_cuda.gemm_select and tests/cpp/test_gemm_select.cpp) without a GPU.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "sparse_gemm.h"
#include "tuning_table.h"

namespace s_ste::gemm {

SparseLinearArgs args_for(const SparseGemmKernel& kernel, SparseLinearArgs args) {
  if (!kernel.has_bias) args.bias = nullptr;  // the caller adds it after the GEMM
  if (args.knobs.raster == 0) args.knobs.raster = kernel.knobs.raster;
  if (args.knobs.swizzle == 0) args.knobs.swizzle = kernel.knobs.swizzle;
  if (args.knobs.promotion == 0) args.knobs.promotion = kernel.knobs.promotion;
  return args;
}

const char* rule_name(Rule rule) {
  switch (rule) {
    case Rule::kTable: return "table";
    case Rule::kHeuristic: return "heuristic";
    case Rule::kFallback: return "fallback";
  }
  return "?";
}

namespace {
std::atomic<const char*> g_last_kernel{nullptr};
}  // namespace

void record_last_kernel(const char* name) { g_last_kernel.store(name, std::memory_order_relaxed); }
const char* last_kernel() { return g_last_kernel.load(std::memory_order_relaxed); }

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

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

double wave_efficiency(const SparseGemmKernel& k, int64_t M, int64_t N, int sm_count) {
  if (M <= 0 || N <= 0 || sm_count <= 0) return 0.0;
  const int64_t cluster = int64_t{k.cluster_m} * k.cluster_n;
  const int64_t slots = std::max<int64_t>(cluster, sm_count / cluster * cluster);
  const int64_t ctas = round_up(ceil_div(M, k.tile_m), k.cluster_m) * round_up(ceil_div(N, k.tile_n), k.cluster_n);
  const int64_t waves = ceil_div(ctas, slots);
  return double(M) * double(N) / (double(waves) * double(slots) * double(k.tile_m) * double(k.tile_n));
}

Selection choose_kernel(const SelectQuery& q) {
  int count = 0;
  const SparseGemmKernel* const* all = kernels(&count);
  std::string reasons;
  std::vector<const SparseGemmKernel*> candidates;  // registry order
  for (int i = 0; i < count; ++i) {
    const SparseGemmKernel* k = all[i];
    if (k->sm90_layout != q.sm90_layout || k->a != q.a || k->b != q.b) continue;
    Status s = architecture_rule(*k, q.sm_major);
    if (s == nullptr) s = k->can_implement(args_for(*k, q.args));
    if (s == nullptr && q.device >= 0) s = image_status(*k, q.device);
    if (s == nullptr) candidates.push_back(k);
    else reasons += std::string(reasons.empty() ? "" : "; ") + k->name + ": " + s;
  }
  Selection out;
  if (candidates.empty()) {
    out.why = reasons.empty() ? "no kernel for this layout and these dtypes in this build" : reasons;
    return out;
  }

  // 1. The device's table, when it has a row for the problem whose kernel takes it.
  const char* device = q.device_name ? q.device_name : (q.device >= 0 ? device_name(q.device) : nullptr);
  std::string table_why;
  const TuningTable* table = table_for(device, q.sm_count, &table_why);
  if (table != nullptr) {
    if (const TableRow* row = find_row(*table, q.a, q.b, q.args.M, q.args.N, q.args.K)) {
      const std::string where = table->source + ":" + std::to_string(row->line);
      Status s = nullptr;
      if (std::find(candidates.begin(), candidates.end(), row->base) == candidates.end())
        s = "its kernel does not take this problem on this GPU";
      else
        s = row->entry.can_implement(args_for(row->entry, q.args));
      if (s == nullptr) {
        out.kernel = &row->entry;
        out.rule = Rule::kTable;
        out.table = where;
        return out;
      }
      table_why = "table row " + where + " (" + row->kernel_name + ") not used: " + s;
    } else {
      table_why = "no row of " + table->source + " for this problem";
    }
  }

  // 2. The heuristic: wave efficiency (times the table's measured weight), registry order
  //    breaking ties; FastAccum kernels only through a table row.
  const SparseGemmKernel* best = nullptr;
  double best_score = 0.0;
  for (const SparseGemmKernel* k : candidates) {
    if (k->accumulation == Accumulation::kFp8FastAccum) continue;
    const double score = wave_efficiency(*k, q.args.M, q.args.N, q.sm_count) * table_weight(table, *k);
    if (best == nullptr || score > best_score * (1.0 + kHeuristicMargin)) {
      best = k;
      best_score = score;
    }
  }
  if (best == nullptr) {
    out.why = "only FastAccum kernels take this problem, and no tuning table row chose one";
    return out;
  }
  out.kernel = best;
  out.rule = Rule::kHeuristic;
  out.why = table_why;
  return out;
}

const SparseGemmKernel* select_kernel(const SparseLinearArgs& args, bool sm90_layout, Element a, Element b,
                                      int sm_major, int sm_count, std::string* why, int device) {
  SelectQuery q{args, sm90_layout, a, b, sm_major, sm_count, device};
  Selection s = choose_kernel(q);
  if (s.kernel == nullptr && why) *why = s.why;
  return s.kernel;
}

}  // namespace s_ste::gemm
