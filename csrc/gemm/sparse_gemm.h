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

// The torch dtype name of an element type ("bfloat16", "float16", "float8_e4m3fn",
// "float8_e5m2"): the spelling of the Python bindings and of the tuning tables.
const char* element_name(Element e);
// The element type named `name` (element_name's spelling); false if none is.
bool parse_element(const char* name, Element* out);

// Run-time knobs of the SM90 kernels: the persistent tile scheduler's raster order and swizzle,
// and the FP8 promotion interval. They change how a kernel walks its tiles or how often it
// promotes partial sums, never which instantiation runs. 0 in every field is the kernel's own
// default, so a zero-initialised SparseLinearArgs runs exactly as before the knobs existed.
// can_implement rejects a value the kernel does not take, naming the knob (csrc/gemm/knobs.h).
enum Raster : int {
  kRasterDefault = 0,  // CUTLASS's heuristic: along M when the tile grid has more N tiles than M tiles
  kRasterAlongM = 1,
  kRasterAlongN = 2,
};
struct GemmKnobs {
  int raster;     // a Raster value
  int swizzle;    // the scheduler's max swizzle size: 0 = its default (1), else 1, 2, 4 or 8
  int promotion;  // FP8 promoting kernels: wgmmas between promotions, 0 = the default (4), else a
                  // positive multiple of SparseGemmKernel::promotion_step; other kernels: 0 only
};

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
  GemmKnobs knobs;        // run-time knobs, 0 = the kernel's defaults (see args_for)
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

// How a kernel accumulates: f32 in the tensor core (16-bit inputs); FP8 with the partial sums
// promoted into f32 registers every `promotion` wgmmas (accurate); FP8 FastAccum, all of K in
// the tensor core's FP8 accumulator (fewer mantissa bits: never chosen by the heuristic, only
// by a measured table whose accuracy check passed; see csrc/gemm/README.md).
enum class Accumulation : int { kF32 = 0, kFp8Promoted = 1, kFp8FastAccum = 2 };

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
  // Appended with defaults, so entries written before them (SM80, the tests' fakes) keep compiling.
  int cluster_m = 1, cluster_n = 1;           // CTAs per cluster along M and N (SM90 thread-block clusters)
  Accumulation accumulation = Accumulation::kF32;
  bool scheduler_knobs = false;               // takes GemmKnobs::raster / swizzle
  int promotion_step = 0;                     // GemmKnobs::promotion must be a multiple of this; 0: no promotion knob
  int stages = 0;                             // mainloop pipeline stages (0: not reported)
  int smem_bytes = 0;                         // shared memory of one CTA (0: not reported)
  GemmKnobs knobs = {};                       // the knobs this entry runs with where args.knobs are 0
                                              // (registry entries: all 0; a tuning table's rows set them)
};

// Every instantiation compiled into this build, in selection order (csrc/gemm/registry.cpp).
const SparseGemmKernel* const* kernels(int* count);

// The kernel the latest sparse_linear call on CUDA ran ("fallback" for decompress + dense
// GEMM, nullptr before any call): lets tests and benches see which path ran.
void record_last_kernel(const char* name);
const char* last_kernel();

// `args` as `kernel` takes them: without the bias when the kernel does not fuse it (the
// caller then adds it after the GEMM), and with the entry's knobs where args.knobs are 0 (a
// kernel chosen from a tuning table carries the table's raster / swizzle / promotion).
SparseLinearArgs args_for(const SparseGemmKernel& kernel, SparseLinearArgs args);

// Whether `kernel` computes its product with an image reported as `image`: nullptr if it
// does, else why not (no image for this GPU; an SM90 kernel whose image is not sm_90a code,
// e.g. JIT-compiled from sm_80 PTX). Pure: the CPU tests drive it with made-up images.
Status image_verdict(const SparseGemmKernel& kernel, const KernelImage& image);

// image_verdict of kernel->image() on CUDA device `device` (the current device), computed
// once per kernel and device and cached (errors other than "no image" are not cached).
Status image_status(const SparseGemmKernel& kernel, int device);

// Which rule chose the kernel for a problem.
enum class Rule : int {
  kTable = 0,      // a row of the tuning table measured on this device (csrc/gemm/tuning_table.h)
  kHeuristic = 1,  // the wave-efficiency heuristic (no table, or no usable row for the problem)
  kFallback = 2,   // no kernel takes the problem: sparse_linear decompresses and runs a dense GEMM
};
const char* rule_name(Rule rule);  // "table", "heuristic", "fallback"

// A problem and the GPU it is to run on, as choose_kernel reads them.
struct SelectQuery {
  SparseLinearArgs args;  // sizes, pointers (alignment checks) and knobs of the problem
  bool sm90_layout;       // metadata family of the compressed operand
  Element a, b;           // element types of the values and of x
  int sm_major;           // compute capability major of the GPU
  int sm_count;           // its SMs
  int device = -1;        // >= 0: the current CUDA device, whose loaded images are checked
                          // (image_status) and whose name picks the tuning table; -1: host only
  const char* device_name = nullptr;  // the GPU's name for the table (cudaDeviceProp::name, e.g.
                                      // "NVIDIA H200"); nullptr: the name of `device` when
                                      // device >= 0, else no table
};

struct Selection {
  const SparseGemmKernel* kernel = nullptr;  // nullptr: none takes the problem (rule kFallback)
  Rule rule = Rule::kFallback;
  std::string why;    // kFallback: each candidate's reason; kHeuristic: why no table row was used
                      // (empty when no table is installed for the device)
  std::string table;  // kTable: "<table source>:<line>" of the row
};

// The kernel for a problem (csrc/gemm/select.cpp). Candidates: same metadata family and
// element types, built for a GPU of compute capability major `sm_major` (SM90 kernels: 9.x
// only; SM80 kernels: 8.x and 9.x, whose images this build holds; none on 10.x/12.x),
// accepted by can_implement and, when `device` >= 0, whose loaded image passes image_status.
//   1. table: the installed tuning table of this device (its name and SM count, and a
//      fingerprint equal to this build's kernels) with a row for (a, b, M, K, N) whose kernel
//      is a candidate and takes the problem with the row's knobs: that row's entry (the kernel
//      with the row's knobs, see args_for);
//   2. heuristic: among the candidates, excluding FastAccum kernels, the best wave efficiency
//      (wave_efficiency, times the table's measured weight of the kernel when the device has a
//      table); the registry order (today's defaults first) breaks ties, and a later kernel must
//      beat an earlier one by more than kHeuristicMargin to win;
//   3. fallback: none, with each candidate's reason in `why`.
Selection choose_kernel(const SelectQuery& query);

// A later kernel (registry order) must score more than this fraction above the best so far to
// replace it: wave efficiency is a model, and two tiles within a few percent of each other are a
// tie (e.g. 64- and 128-row tiles at M = 11008, N = 16384: 0.999 vs 0.993). Untuned: the tables
// replace it where bench/tune_gemm.py has measured.
inline constexpr double kHeuristicMargin = 0.10;

// The fraction of the launched tile slots that holds the problem:
//   M*N / (waves * slots * tile_m*tile_n),  slots = sm_count rounded down to whole clusters,
//   waves = ceil(ctas / slots),  ctas = (M tiles rounded up to cluster_m) * (N tiles rounded
//   up to cluster_n)
// (wave quantisation, cluster rounding and the ragged edge tiles of a persistent kernel). Pure.
double wave_efficiency(const SparseGemmKernel& kernel, int64_t M, int64_t N, int sm_count);

// choose_kernel's kernel, with the reasons in *why when none takes the problem (the interface
// sparse_linear_cuda.cpp calls; device = -1 skips the image check and the device's table).
const SparseGemmKernel* select_kernel(const SparseLinearArgs& args, bool sm90_layout, Element a, Element b,
                                      int sm_major, int sm_count, std::string* why, int device = -1);

// The name of CUDA device `device` (cudaDeviceProp::name, cached; "" if it cannot be read):
// csrc/gemm/device_name.cpp, the only CUDA runtime call of the selection.
const char* device_name(int device);

}  // namespace s_ste::gemm
