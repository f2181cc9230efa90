// SM80 family of the sparse GEMM interface (sparse_gemm.h): CUTLASS 2.x
// cutlass::gemm::device::SparseGemm, Ampere mma.sp (also what runs on sm_90a: it is the
// Ampere path there, not wgmma).
//
// GEMM mapping for out = x · Âᵀ (out_is_transposed = true):
//   A = Â      [M, K] RowMajor, 2:4 sparse along K: values [M, K/2] row-major (lda = K/2)
//              + metadata uint16 (torch: int16, same bytes) of logical shape [M, K/16] in
//              ColumnMajorInterleaved<2> after cutlass::reorder_meta (layout "sm80",
//              csrc/include/s_ste/layout_sm80.cuh), leading dimension 2·M.
//   B = xᵀ     [K, N] ColumnMajor (ldb = K): x [N, K] row-major read as is.
//   D = yᵀ     [M, N] RowMajor (ldd = N). CUTLASS's DefaultSparseGemm is only specialised
//              for a RowMajor C/D, so y itself cannot be written directly.
//   C          unused: the epilogue is LinearCombination<ScaleType::Nothing>, which never
//              reads the source (is_source_needed() == false) and computes D = convert(acc).
// fp32 accumulation; D is rounded to nearest into the input element type. No bias, no alpha.
//
// Include only from a .cu that instantiates one element type; never include torch here.
#pragma once

#include <cuda_runtime_api.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cutlass/cutlass.h"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "cutlass/gemm/device/gemm_sparse.h"
#include "cutlass/gemm/threadblock/threadblock_swizzle.h"
#include "cutlass/layout/matrix.h"
#include "cutlass/numeric_types.h"
#include "cutlass_element.cuh"
#include "s_ste/layout_sm80.cuh"
#include "sparse_gemm.h"

namespace s_ste::gemm::sm80 {

// Launches GemmKernel like cutlass::Kernel<GemmKernel> (what device::SparseGemm::run uses),
// with an architecture guard: the body only exists for sm_80 and newer (mma.sp, cp.async);
// built for anything older it traps instead of computing garbage.
template <typename GemmKernel>
__global__ void sparse_gemm_sm80_kernel(typename GemmKernel::Params params) {
#if defined(__CUDA_ARCH__)
#if (__CUDA_ARCH__ >= 800)
  extern __shared__ int shared_storage_base[];
  auto* shared_storage =
      reinterpret_cast<typename GemmKernel::SharedStorage*>(shared_storage_base);
  GemmKernel op;
  op(params, *shared_storage);
#else
  __trap();  // mma.sp needs sm_80+; this image must never be launched
#endif
#endif
}

template <typename ElementT>
struct SparseGemmSm80 {
  static_assert(std::is_same_v<ElementT, cutlass::bfloat16_t> ||
                    std::is_same_v<ElementT, cutlass::half_t>,
                "SM80 sparse GEMM: bf16 or fp16 only");

  using ThreadblockShape = cutlass::gemm::GemmShape<128, 128, 64>;
  using WarpShape = cutlass::gemm::GemmShape<64, 64, 64>;
  using InstructionShape = cutlass::gemm::GemmShape<16, 8, 32>;
  // cutlass_library generator.py (GenerateSM80_SparseTensorOp_16832) ships 128x128x64 with
  // 3 stages and the Identity8 swizzle for f16/bf16 sparse.
  static constexpr int kStages = 3;
  static constexpr int kAlignment = 128 / cutlass::sizeof_bits<ElementT>::value;  // 8
  using Swizzle = cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<8>;
  using EpilogueOp =
      cutlass::epilogue::thread::LinearCombination<ElementT, kAlignment, float, float,
                                                   cutlass::epilogue::thread::ScaleType::Nothing>;

  using Gemm = cutlass::gemm::device::SparseGemm<
      ElementT, cutlass::layout::RowMajor,     // A = Â (compressed values)
      ElementT, cutlass::layout::ColumnMajor,  // B = xᵀ
      ElementT, cutlass::layout::RowMajor,     // C/D = yᵀ
      float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, ThreadblockShape, WarpShape,
      InstructionShape, EpilogueOp, Swizzle, kStages, kAlignment, kAlignment,
      /*SplitKSerial=*/false, cutlass::arch::OpMultiplyAdd>;
  using GemmKernel = typename Gemm::GemmKernel;
  using ElementE = typename Gemm::ElementE;
  using LayoutE = typename Gemm::LayoutE;

  // The metadata contract of layout "sm80" (int16 [M, K/16], reorder_meta +
  // ColumnMajorInterleaved<2>): fail the build if CUTLASS ever disagrees.
  static_assert(std::is_same_v<ElementE, uint16_t>, "SM80 16-bit sparse: uint16 metadata");
  static_assert(std::is_same_v<LayoutE, cutlass::layout::ColumnMajorInterleaved<2>>,
                "SM80 sparse metadata layout must be ColumnMajorInterleaved<2>");
  static_assert(Gemm::kSparse == 2, "2:4 sparsity");
  static_assert(Gemm::kElementsPerElementE == 8,
                "one uint16 of metadata covers 8 compressed = 16 logical elements of A");
  static_assert(Gemm::kMetaSizeInBits == 2, "2-bit indices");
  static_assert(Gemm::kAlignmentA == 8 && Gemm::kAlignmentB == 8 && Gemm::kAlignmentC == 8 &&
                    Gemm::kAlignmentE == 8,
                "128-bit accesses on every operand");

  static constexpr int kLogicalKPerMeta = Gemm::kSparse * Gemm::kElementsPerElementE;  // 16
  static constexpr int kRowAlign = 32;  // kernel::SparseGemm::can_implement, 16-bit metadata
  static constexpr int kKAlign = ThreadblockShape::kK;  // no K residue (see can_implement)
  static constexpr size_t kPointerAlign = 16;           // cp.async.cg 16 B / 128-bit stores
  // The alignment table (csrc/layout_rules.cpp, exported to Python) states these rules from
  // layout_sm80.cuh: fail the build if this GEMM ever needs something else.
  static_assert(kRowAlign == s_ste::sm80::kGemmRowAlign && kKAlign == s_ste::sm80::kGemmKAlign &&
                    Gemm::kAlignmentC == s_ste::sm80::kGemmTokenAlign,
                "layout_sm80.cuh's GEMM rules disagree with the SM80 sparse GEMM");
  static_assert(kLogicalKPerMeta == s_ste::sm80::kMetaCols, "layout_sm80.cuh's metadata columns disagree");
  static constexpr int64_t kMaxDim = INT_MAX - 255;
  static constexpr size_t kSharedStorageBytes = sizeof(typename GemmKernel::SharedStorage);

  static typename Gemm::Arguments make_arguments(const SparseLinearArgs& a) {
    const int M = static_cast<int>(a.M), N = static_cast<int>(a.N), K = static_cast<int>(a.K);
    cutlass::TensorRef<ElementT const, cutlass::layout::RowMajor> ref_A(
        static_cast<ElementT const*>(a.values), cutlass::layout::RowMajor(K / Gemm::kSparse));
    cutlass::TensorRef<ElementT const, cutlass::layout::ColumnMajor> ref_B(
        static_cast<ElementT const*>(a.x), cutlass::layout::ColumnMajor(K));
    // Never read (ScaleType::Nothing); null so that any read would fault loudly.
    cutlass::TensorRef<ElementT const, cutlass::layout::RowMajor> ref_C(
        nullptr, cutlass::layout::RowMajor(N));
    cutlass::TensorRef<ElementT, cutlass::layout::RowMajor> ref_D(
        static_cast<ElementT*>(a.out), cutlass::layout::RowMajor(N));
    cutlass::TensorRef<ElementE, LayoutE> ref_E(
        const_cast<ElementE*>(static_cast<ElementE const*>(a.meta)),
        LayoutE::packed(cutlass::MatrixCoord(M, K / kLogicalKPerMeta)));
    return typename Gemm::Arguments(cutlass::gemm::GemmCoord(M, N, K), ref_A, ref_B, ref_C,
                                    ref_D, ref_E, typename EpilogueOp::Params(),
                                    /*split_k_slices=*/1);
  }

  static cutlass::gemm::GemmCoord tiled_shape(const SparseLinearArgs& a) {
    return Swizzle().get_tiled_shape(
        cutlass::gemm::GemmCoord(static_cast<int>(a.M), static_cast<int>(a.N),
                                 static_cast<int>(a.K)),
        {ThreadblockShape::kM, ThreadblockShape::kN, ThreadblockShape::kK}, 1);
  }

  static bool aligned(const void* p) {
    return reinterpret_cast<uintptr_t>(p) % kPointerAlign == 0;
  }

  // Host-only arithmetic: no CUDA runtime call, safe without a device.
  static Status can_implement(const SparseLinearArgs& a) {
    if (a.M <= 0 || a.N <= 0 || a.K <= 0)
      return "sm80 sparse GEMM: M, N and K must be positive (empty problems are the caller's)";
    if (a.M % kRowAlign != 0)
      return "sm80 sparse GEMM: M (out_features) must be a multiple of 32 (rows of the "
             "reordered uint16 metadata; CUTLASS SparseGemm::can_implement)";
    if (a.K % kKAlign != 0)
      return "sm80 sparse GEMM: K (in_features) must be a multiple of 64, the threadblock K "
             "(CUTLASS SparseGemm has no K residue: zero-filled out-of-bounds metadata would "
             "be the invalid code 0x0)";
    if (a.N % Gemm::kAlignmentC != 0)
      return "sm80 sparse GEMM: N (tokens) must be a multiple of 8 (out [M, N] row-major "
             "is written with 128-bit stores; CUTLASS also requires N % kAlignmentB)";
    // CUTLASS 2.x sizes are int (GemmCoord); keep M + 127 etc. (tile rounding) from overflowing.
    if (a.M > kMaxDim || a.N > kMaxDim || a.K > kMaxDim)
      return "sm80 sparse GEMM: M, N and K must each be below 2^31 - 256 (int32 CUTLASS GemmCoord)";
    if (a.alpha != nullptr)
      return "sm80 sparse GEMM: alpha is not supported on SM80 (pass alpha = nullptr; "
             "scale the values or the output instead)";
    if (a.bias != nullptr)
      return "sm80 sparse GEMM: bias must be nullptr (has_bias = false: the op layer adds "
             "the bias)";
    if (a.x == nullptr) return "sm80 sparse GEMM: x is a null pointer";
    if (a.values == nullptr) return "sm80 sparse GEMM: values is a null pointer";
    if (a.meta == nullptr) return "sm80 sparse GEMM: meta is a null pointer";
    if (a.out == nullptr) return "sm80 sparse GEMM: out is a null pointer";
    if (!aligned(a.x)) return "sm80 sparse GEMM: x must be 16-byte aligned";
    if (!aligned(a.values)) return "sm80 sparse GEMM: values must be 16-byte aligned";
    if (!aligned(a.meta)) return "sm80 sparse GEMM: meta must be 16-byte aligned";
    if (!aligned(a.out)) return "sm80 sparse GEMM: out must be 16-byte aligned";

    const cutlass::gemm::GemmCoord tiles = tiled_shape(a);
    const dim3 grid = Swizzle().get_grid_shape(tiles);
    // grid.x = tiles.m() * 8 (swizzle) always fits; grid.y = ceil(tiles.n() / 8) may not.
    if (grid.y > 65535u || grid.z > 65535u)
      return "sm80 sparse GEMM: problem too large for the launch grid (N ≤ 65535·1024 tokens)";

    switch (Gemm::can_implement(make_arguments(a))) {
      case cutlass::Status::kSuccess:
        return nullptr;
      case cutlass::Status::kErrorMisalignedOperand:
        return "sm80 sparse GEMM: CUTLASS SparseGemm::can_implement rejected the problem "
               "(misaligned operand)";
      case cutlass::Status::kErrorInvalidProblem:
        return "sm80 sparse GEMM: CUTLASS SparseGemm::can_implement rejected the problem "
               "(invalid problem)";
      default:
        return "sm80 sparse GEMM: CUTLASS SparseGemm::can_implement rejected the problem";
    }
  }

  static size_t workspace_bytes(const SparseLinearArgs& a) {
    // No split-K: SparseGemm::get_workspace_size is 0 (kept for the interface).
    return Gemm::get_workspace_size(make_arguments(a));
  }

  // The body of device::SparseGemm::initialize + run, launching the guarded kernel above.
  static Status run(const SparseLinearArgs& a) {
    if (Status s = can_implement(a)) return s;

    const typename Gemm::Arguments args = make_arguments(a);
    const cutlass::gemm::GemmCoord grid_shape = tiled_shape(a);
    typename GemmKernel::Params params{args.problem_size,
                                       grid_shape,
                                       args.ref_A.non_const_ref(),
                                       args.ref_B.non_const_ref(),
                                       args.ref_C.non_const_ref(),
                                       args.ref_D,
                                       args.ref_E.non_const_ref(),
                                       args.epilogue,
                                       /*workspace=*/nullptr};

    constexpr int smem_size = static_cast<int>(kSharedStorageBytes);
    auto* kernel = &sparse_gemm_sm80_kernel<GemmKernel>;
    if constexpr (smem_size >= (48 << 10)) {
      // Per device/context, so set on every call (cheap), as CUTLASS does.
      cudaError_t err =
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_size);
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return cudaGetErrorString(err);  // e.g. no kernel image for this device (sm_80, sm_90a only)
      }
    }
    const dim3 grid = Swizzle().get_grid_shape(grid_shape);
    const dim3 block(GemmKernel::kThreadCount, 1, 1);
    kernel<<<grid, block, smem_size, a.stream>>>(params);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return cudaGetErrorString(err);
    return nullptr;
  }

  // The image of the kernel run() launches, for the current device.
  static KernelImage image() {
    cudaFuncAttributes attr{};
    const cudaError_t err = cudaFuncGetAttributes(&attr, &sparse_gemm_sm80_kernel<GemmKernel>);
    if (err != cudaSuccess) (void)cudaGetLastError();  // not sticky: clear it for the next launch check
    return KernelImage{err, attr.ptxVersion, attr.binaryVersion};
  }
};

// The registry entry of one instantiation.
template <typename ElementT>
constexpr SparseGemmKernel make_sm80_kernel(const char* name) {
  using G = SparseGemmSm80<ElementT>;
  return SparseGemmKernel{name,
                          /*sm=*/80,
                          /*sm90_layout=*/false,
                          element_of<ElementT>(),
                          element_of<ElementT>(),
                          element_of<ElementT>(),
                          /*has_bias=*/false,
                          /*out_is_transposed=*/true,
                          G::ThreadblockShape::kM,
                          G::ThreadblockShape::kN,
                          G::ThreadblockShape::kK,
                          &G::can_implement,
                          &G::workspace_bytes,
                          &G::run,
                          &G::image};
}

}  // namespace s_ste::gemm::sm80
