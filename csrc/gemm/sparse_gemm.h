// Plain C++ entry points of the CUTLASS 2:4 sparse GEMMs: raw pointers, sizes, a stream.
// No torch and no CUTLASS in this header: the op layer (csrc/cuda/sparse_linear_cuda.cpp)
// includes it, and each instantiation lives in its own .cu under csrc/gemm/ that never
// includes torch (≈6× faster to compile).
//
// Every kernel computes the linear-layer product
//     out[n, m] = Σ_k x[n, k] · Â[m, k]  (+ bias[m]),   fp32 accumulation,
// with Â [M, K] 2:4 sparse along K in the compressed form prune_and_compress writes
// (values [M, K/2] row-major + metadata in the layout of the kernel's family), x [N, K]
// row-major (K contiguous). In GEMM terms: D[M, N] = A[M, K] · B[K, N] with A = Â sparse,
// B = xᵀ (K-major). How `out` is stored depends on the family (see out_is_transposed).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace s_ste::gemm {

enum class Element : int { kBF16 = 0, kF16 = 1, kE4M3 = 2, kE5M2 = 3 };

struct SparseLinearArgs {
  int64_t N;              // tokens (rows of x and of out)
  int64_t M;              // out_features (rows of Â)
  int64_t K;              // in_features
  const void* x;          // [N, K] row-major
  const void* values;     // [M, K/2] row-major
  const void* meta;       // metadata, in the family's layout
  const void* bias;       // [M] in the output element type, or nullptr (kernels with has_bias only)
  void* out;              // see SparseGemmKernel::out_is_transposed
  const float* alpha;     // device pointer to a scale applied to the product (FP8 dequant), or nullptr = 1
  void* workspace;        // workspace_bytes(args) bytes of device memory (may be nullptr when 0)
  cudaStream_t stream;
};

// nullptr on success, else a static string naming the failed requirement.
using Status = const char*;

// What the CUDA runtime reports about the image of a kernel for the current device
// (cudaFuncGetAttributes on the kernel function). A build can hold an image that launches
// but computes nothing: CUTLASS's SM90 kernels compiled from sm_80 PTX (JIT on Hopper) or for
// another architecture are a body that prints an error and returns. select_kernel reads this
// (once per kernel and device) and rejects such images; see image_verdict.
struct KernelImage {
  cudaError_t error;   // cudaSuccess, or why there is no image (e.g. cudaErrorNoKernelImageForDevice)
  int ptx_version;     // cudaFuncAttributes::ptxVersion: 90 for sm_90a code; 80 when JIT from compute_80
  int binary_version;  // cudaFuncAttributes::binaryVersion: the SASS the device runs
};

struct SparseGemmKernel {
  const char* name;        // e.g. "sm90_bf16_128x128x128_c2x1_coop"
  int sm;                  // 80 or 90: the minimum compute capability (sm90 kernels need exactly 9.x)
  bool sm90_layout;        // metadata layout: false = "sm80", true = "sm90"
  Element a, b, out;       // element types of Â values, x, out
  bool has_bias;           // fuses bias[m] into the epilogue
  bool out_is_transposed;  // true: out is [M, N] row-major (yᵀ); false: [N, M] row-major (y)
  int tile_m, tile_n, tile_k;
  Status (*can_implement)(const SparseLinearArgs&);
  size_t (*workspace_bytes)(const SparseLinearArgs&);
  Status (*run)(const SparseLinearArgs&);
  KernelImage (*image)();  // the kernel's image for the current device (needs a GPU; clears the error it causes)
};

// Every instantiation compiled into this build, in selection order (csrc/gemm/registry.cpp).
const SparseGemmKernel* const* kernels(int* count);

// The kernel the latest sparse_linear call on CUDA ran ("fallback" for decompress + dense
// GEMM, nullptr before any call): lets tests and benches see which path ran.
void record_last_kernel(const char* name);
const char* last_kernel();

// `args` as `kernel` takes them: without the bias when the kernel does not fuse it (the
// caller then adds it after the GEMM).
SparseLinearArgs args_for(const SparseGemmKernel& kernel, SparseLinearArgs args);

// Whether `kernel` computes its product with an image reported as `image`: nullptr if it
// does, else why not (no image for this GPU; an SM90 kernel whose image is not sm_90a code,
// e.g. JIT-compiled from sm_80 PTX). Pure: the CPU tests drive it with made-up images.
Status image_verdict(const SparseGemmKernel& kernel, const KernelImage& image);

// image_verdict of kernel->image() on CUDA device `device` (the current device), computed
// once per kernel and device and cached (errors other than "no image" are not cached).
Status image_status(const SparseGemmKernel& kernel, int device);

// The kernel for a problem (csrc/gemm/select.cpp). Candidates: same metadata family and
// element types, built for a GPU of compute capability major `sm_major` (SM90 kernels: 9.x
// only; SM80 kernels: 8.x and 9.x, whose images this build holds; none on 10.x/12.x),
// accepted by can_implement and, when `device` >= 0 (the current CUDA device), whose loaded
// image passes image_status. Among them, in registry order (large tiles first), the first
// whose tile grid fills `sm_count` SMs; if none does (a small problem), the one with the
// most tiles. Returns nullptr and each candidate's reason in *why when none takes the
// problem. device = -1 skips the image check (host-only selection, no GPU needed).
const SparseGemmKernel* select_kernel(const SparseLinearArgs& args, bool sm90_layout, Element a, Element b,
                                      int sm_major, int sm_count, std::string* why, int device = -1);

}  // namespace s_ste::gemm
