// SM90 (Hopper, sm_90a) 2:4 sparse GEMM behind the plain interface of sparse_gemm.h, built
// on CUTLASS 3.x collectives (the structure of CUTLASS example 62_hopper_sparse_gemm):
//
//   mainloop  CollectiveBuilder<Sm90, OpClassSparseTensorOp, A RowMajor (K-major, sparse),
//             B ColumnMajor (K-major), f32 accumulate, TileShape, ClusterShape,
//             StageCountAutoCarveout<epilogue smem>, MainloopSchedule>
//             -> sm90_sparse_mma_tma_gmma_ss_warpspecialized.hpp (sparse wgmma, TMA loads of
//                compressed A, metadata E and dense B)
//   epilogue  epilogue::CollectiveBuilder<Sm90, ..., C = void, D ColumnMajor, EpilogueSchedule,
//             fusion::LinCombPerRowBias>  ->  D = alpha * acc + bias[m]   (no C source)
//   kernel    GemmUniversal<Shape<int,int,int,int>, ...> (persistent tile scheduler),
//             run through GemmUniversalAdapter.
//
// GEMM mapping of the linear layer (see sparse_gemm.h):
//   M = out_features, N = tokens, K = in_features
//   A = Â values [M, K/2] row-major + metadata (layout_sm90.cuh)       -> fill_layoutA/E
//   B = xᵀ: x [N, K] row-major is B [K, N] "ColumnMajor" (K contiguous) -> stride (K, 1, 0)
//   D [M, N] ColumnMajor (M contiguous) is out [N, M] row-major, i.e. y itself
//     (SparseGemmKernel::out_is_transposed = false)                    -> stride (1, M, 0)
//   bias [M] is a per-row (GEMM M) vector: fusion::LinCombPerRowBias = Sm90ColBroadcast,
//     whose nullptr default (EnableNullptr = true, null_default = 0) makes bias == nullptr
//     mean "no bias" with the same kernel.
//   alpha: fusion alpha_ptr = args.alpha (read on the device, no host sync); when
//     args.alpha == nullptr the scalar alpha = 1 is used instead (Sm90ScalarBroadcast).
//
// Include this header from exactly one .cu per instantiation; never together with torch
// headers (see csrc/gemm/README.md). It compiles for sm_80 too: CUTLASS compiles the SM90
// kernel body only for sm_90a (ENABLE_SM90_KERNEL_LEVEL / __CUDA_ARCH_FEAT_SM90_ALL).
#pragma once

#if !defined(__CUDACC__)
#error "sm90_sparse_gemm.cuh is a CUDA header: include it from a .cu compiled by nvcc"
#endif

// No assert() in the kernel. CuTe/CUTLASS device code asserts (e.g. the smem swizzle
// alignment check in cute/pointer_flagged.hpp); each live assert is a call to __assertfail,
// and a call inside the wgmma pipeline makes ptxas serialize every wgmma of the kernel
// (warning C7510 "wgmma.mma_async instructions are serialized due to wgmma pipeline
// crossing function boundary"): measured on this kernel without -DNDEBUG. setup.py and
// CMake pass -DNDEBUG; for any other build this header switches assert() off for its
// translation unit, so it must be included before any CUTLASS/CuTe header.
// <assert.h> is deliberately re-evaluated on every inclusion, so including it again after
// defining NDEBUG turns assert() into a no-op even if it was included before.
#if !defined(NDEBUG)
#if defined(CUTLASS_HOST_DEVICE)
#error "include gemm/sm90_sparse_gemm.cuh before any CUTLASS/CuTe header (or build with -DNDEBUG)"
#endif
#define NDEBUG 1
#endif
#include <assert.h>

#include <cuda_runtime_api.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/kernel_hardware_info.h"
#include "cutlass/numeric_types.h"
// Mainloop: only the SM90 sparse mainloops and their builder (the umbrella
// gemm/collective/collective_builder.hpp would pull in every architecture's builders); the
// collectives must be declared before the builder, as in tests/cpp/test_layout_sm90.cu.
#include "cutlass/gemm/collective/builders/sm90_sparse_config.inl"
#include "cutlass/gemm/collective/collective_mma_decl.hpp"
#include "cutlass/gemm/collective/sm90_sparse_mma_tma_gmma_ss_warpspecialized.hpp"
#include "cutlass/gemm/collective/sm90_sparse_mma_tma_gmma_ss_warpspecialized_fp8.hpp"
#include "cutlass/gemm/collective/collective_builder_decl.hpp"
#include "cutlass/gemm/collective/builders/sm90_sparse_gmma_builder.inl"
#include "cutlass/gemm/dispatch_policy.hpp"
// Epilogue, kernel and device adapter.
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"

#include "cutlass_element.cuh"
#include "knobs.h"
#include "sparse_gemm.h"
#include "s_ste/layout_sm90.cuh"

#if !defined(CUTLASS_ARCH_MMA_SPARSE_SM90_SUPPORTED)
#error "CUTLASS's SM90 sparse GEMM needs CUDA 12.2 or newer"
#endif

namespace s_ste::gemm::sm90 {

// The FP8 FastAccum schedules: the builder maps them to the plain sparse mainloop (no
// promotion), keeping all of K in the tensor core's FP8 accumulator.
template <class Schedule>
constexpr bool is_fast_accum_v =
    std::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedFP8FastAccum> ||
    std::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8FastAccum> ||
    std::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum>;

template <class Schedule>
constexpr bool is_pingpong_v = std::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedPingpong> ||
                               std::is_same_v<Schedule, cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8FastAccum>;

// ElementA: Â values (sparse, K-major); ElementB: x (K-major); ElementD: out and bias.
// TileShape / ClusterShape: cute::Shape<Int<..>, Int<..>, Int<..>>.
template <class ElementA_, class ElementB_, class ElementD_, class TileShape_, class ClusterShape_,
          class MainloopSchedule_ = cutlass::gemm::KernelTmaWarpSpecializedCooperative,
          class EpilogueSchedule_ = cutlass::epilogue::TmaWarpSpecializedCooperative>
struct SparseGemm {
  using ElementA = ElementA_;
  using ElementB = ElementB_;
  using ElementD = ElementD_;
  using ElementBias = ElementD_;
  using ElementAccumulator = float;
  using ElementCompute = float;
  using ElementScalar = float;  // alpha, read from SparseLinearArgs::alpha (const float*)
  using TileShape = TileShape_;
  using ClusterShape = ClusterShape_;
  using MainloopSchedule = MainloopSchedule_;
  using EpilogueSchedule = EpilogueSchedule_;

  static constexpr int kBitsA = cute::sizeof_bits_v<ElementA>;
  static constexpr int kBitsB = cute::sizeof_bits_v<ElementB>;
  static constexpr int kBitsD = cute::sizeof_bits_v<ElementD>;
  static_assert(kBitsA == 16 || kBitsA == 8, "2:4 sparse A must be a 16-bit or an 8-bit type");

  // 16-byte (TMA) vectors, in elements.
  static constexpr int kAlignmentA = 128 / kBitsA;
  static constexpr int kAlignmentB = 128 / kBitsB;
  static constexpr int kAlignmentD = 128 / kBitsD;
  static constexpr int kAlignmentBias = 128 / kBitsD;

  using LayoutTagA = cutlass::layout::RowMajor;     // A [M, K], K contiguous (sparse operand)
  using LayoutTagB = cutlass::layout::ColumnMajor;  // B [K, N], K contiguous (= x [N, K] row-major)
  using LayoutTagD = cutlass::layout::ColumnMajor;  // D [M, N], M contiguous (= out [N, M] row-major)

  using ProblemShape = cute::Shape<int, int, int, int>;  // (M, N, K, L)

  // D = alpha * acc + beta * C + bias[m], with C absent (ElementSource = void): the
  // beta * C term is compiled out (Sm90TreeVisitor<homogeneous_multiply_add, ..., Sm90SrcFetch>
  // specialisation, `if constexpr (!is_void_v<ElementSource>)`).
  using FusionOperation =
      cutlass::epilogue::fusion::LinCombPerRowBias<ElementD, ElementCompute, ElementBias,
                                                   /*ElementSource=*/void, ElementScalar, kAlignmentBias,
                                                   cutlass::FloatRoundStyle::round_to_nearest>;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassSparseTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAccumulator, ElementCompute,
      /*ElementC=*/void, LayoutTagD, kAlignmentD, ElementD, LayoutTagD, kAlignmentD, EpilogueSchedule,
      FusionOperation>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassSparseTensorOp, ElementA, LayoutTagA, kAlignmentA, ElementB,
      LayoutTagB, kAlignmentB, ElementAccumulator, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp;

  using GemmKernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, CollectiveMainloop, CollectiveEpilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;
  using Arguments = typename Gemm::Arguments;

  using SparseConfig = typename CollectiveMainloop::SparseConfig;
  using LayoutA = typename CollectiveMainloop::LayoutA;
  using LayoutE = typename CollectiveMainloop::LayoutE;
  using ElementE = typename CollectiveMainloop::ElementE;
  using StrideB = typename GemmKernel::StrideB;
  using StrideC = typename GemmKernel::StrideC;
  using StrideD = typename GemmKernel::StrideD;

  // ---- the compressed layout the mainloop consumes is the one layout_sm90.cuh writes -------
  static constexpr int kMinTileK = kBitsA == 8 ? s_ste::sm90::kMinTileK8 : s_ste::sm90::kMinTileK16;
  using OurSparseConfig =
      cutlass::Sm90GemmSparseConfig<cute::sparse_elem<2, ElementA>, cute::GMMA::Major::K,
                                    cute::sparse_elem<8, uint8_t>, cute::Int<kMinTileK>>;
  static_assert(std::is_same_v<SparseConfig, OurSparseConfig>,
                "the mainloop's Sm90GemmSparseConfig is not the one layout_sm90.cuh encodes "
                "(MinTileK = min(TileK, 128) must equal s_ste::sm90::kMinTileK16/8 = 128: use TileK >= 128)");
  static_assert(std::is_same_v<LayoutA, decltype(OurSparseConfig::deduce_layoutA())> &&
                    std::is_same_v<LayoutE, decltype(OurSparseConfig::deduce_layoutE())>,
                "mainloop LayoutA/LayoutE differ from our SparseConfig's");
  static_assert(std::is_same_v<ElementE, uint8_t>, "SM90 sparse metadata must be raw bytes");
  // The builder picked the mainloop we mean: the plain sparse one for 16-bit A, the
  // accumulator-promoting FP8 one for 8-bit A with a non-FastAccum schedule (see sm90_e4m3.cu),
  // the plain one without promotion for an FP8 FastAccum schedule; with our schedule and cluster.
  static constexpr bool kFastAccum = is_fast_accum_v<MainloopSchedule>;
  static constexpr bool kPromotes = kBitsA == 8 && !kFastAccum;
  static_assert(!kFastAccum || kBitsA == 8, "FastAccum schedules are FP8 only");
  using Policy = typename CollectiveMainloop::DispatchPolicy;
  static_assert(std::is_same_v<Policy, std::conditional_t<kPromotes,
                                                          cutlass::gemm::MainloopSm90TmaGmmaWarpSpecializedSparseFP8<
                                                              Policy::Stages, ClusterShape, MainloopSchedule>,
                                                          cutlass::gemm::MainloopSm90TmaGmmaWarpSpecializedSparse<
                                                              Policy::Stages, ClusterShape, MainloopSchedule>>>,
                "unexpected sparse mainloop (expected the plain one for 16-bit A or FP8 FastAccum, "
                "the promoting FP8 one otherwise)");
  // Pingpong: each of the two consumer warpgroups owns a whole tile (a 128-thread TiledMma).
  static_assert(!is_pingpong_v<MainloopSchedule> ||
                    (cute::size(typename CollectiveMainloop::TiledMma{}) == 128 &&
                     GemmKernel::NumMmaWarpGroups == 2 && GemmKernel::MaxThreadsPerBlock == 384),
                "expected the Pingpong kernel shape (128-thread TiledMma, two consumer warpgroups)");
  // The MMA consumes the operand types of this instantiation (A sparse, byte metadata), which
  // make_sm90_kernel registers.
  using TiledMma = typename CollectiveMainloop::TiledMma;
  static_assert(std::is_same_v<typename TiledMma::ValTypeA, cute::sparse_elem<2, ElementA>> &&
                    std::is_same_v<typename TiledMma::ValTypeB, ElementB> &&
                    std::is_same_v<typename TiledMma::ValTypeE, cute::sparse_elem<8, uint8_t>>,
                "unexpected sparse MMA operand types");
  static_assert(int(typename OurSparseConfig::TensorEAtomK{}) == s_ste::sm90::atom_k(kBitsA) &&
                    int(typename OurSparseConfig::TensorEAtomM{}) == s_ste::sm90::kAtomM &&
                    int(typename OurSparseConfig::TensorAAlignmentK{}) == s_ste::sm90::values_k_align(kBitsA),
                "layout_sm90.cuh constants disagree with CUTLASS's SparseConfig");
  // The promotion interval counts wgmmas and must be a multiple of those one k-tile issues
  // (the FP8 mainloop's can_implement): TileK / 64 for the m64nNk64 sparse FP8 wgmma.
  static constexpr int kMmasPerKTile = int(cute::size<2>(TileShape{})) / int(cute::tile_size<2>(TiledMma{}));
  static constexpr int kPromotionStep = kPromotes ? kMmasPerKTile : 0;
  static_assert(!kPromotes || 4 % kMmasPerKTile == 0, "the default promotion interval (4) must suit the tile");
  static_assert(cute::size<2>(TileShape{}) >= kMinTileK, "TileK < 128 would need a different metadata layout");
  // workspace_bytes() is computed without the SM count: true for the persistent scheduler
  // (its get_workspace_size is 0), not for stream-K.
  static_assert(std::is_same_v<typename GemmKernel::TileScheduler, cutlass::gemm::kernel::detail::PersistentTileSchedulerSm90>,
                "workspace_bytes() assumes the (workspace-free) persistent tile scheduler");

  // ---- requirements --------------------------------------------------------------------
  // K: compressed rows hold K/2 A elements and must be whole 16-byte TMA vectors
  //    (mainloop can_implement: check_alignment<128/bits(A)>((M, K/2, L), (K/2, 1, .)));
  //    x rows (K elements of B) likewise (check_alignment<128/bits(B)>((N, K, L), StrideB)).
  static constexpr int kKAlign = s_ste::sm90::values_k_align(kBitsA) > kAlignmentB
                                     ? s_ste::sm90::values_k_align(kBitsA)
                                     : kAlignmentB;
  // M: D is column-major [M, N]; its leading dimension M must be whole 16-byte vectors for
  //    the TMA store (epilogue can_implement: check_alignment<128/bits(D)>((M, N, L), (1, M, .))).
  static constexpr int kMAlign = kAlignmentD;
  static_assert(kKAlign == (kBitsA == 16 ? 16 : 32), "unexpected K alignment");
  // The alignment table (csrc/layout_rules.cpp, exported to Python) states these rules from
  // layout_sm90.cuh: fail the build if this GEMM ever needs something else.
  static_assert(kKAlign == s_ste::sm90::gemm_k_align(kBitsA) && kMAlign == s_ste::sm90::kGemmRowAlign,
                "layout_sm90.cuh's GEMM rules disagree with the SM90 sparse GEMM");

  static bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

  // Our own checks: messages naming the failed requirement. No CUDA call.
  static Status check_args(const SparseLinearArgs& a) {
    if (a.M <= 0 || a.N <= 0 || a.K <= 0) return "sm90 sparse GEMM: M, N and K must be positive";
    if (a.M > INT_MAX || a.N > INT_MAX || a.K > INT_MAX)
      return "sm90 sparse GEMM: M, N and K must fit in int32 (CUTLASS problem shape)";
    if (a.K % kKAlign != 0)
      return kBitsA == 16 ? "sm90 sparse GEMM: K (in_features) must be a multiple of 16 for 16-bit A "
                            "(TMA needs the K/2 compressed values of a row to be whole 16-byte vectors)"
                          : "sm90 sparse GEMM: K (in_features) must be a multiple of 32 for 8-bit A "
                            "(TMA needs the K/2 compressed values of a row to be whole 16-byte vectors)";
    if (a.M % kMAlign != 0)
      return kBitsD == 16 ? "sm90 sparse GEMM: M (out_features) must be a multiple of 8 for a 16-bit output "
                            "(TMA store of out [N, M]: each row must be whole 16-byte vectors)"
                          : "sm90 sparse GEMM: M (out_features) must be a multiple of 16 bytes of output "
                            "(TMA store of out [N, M]: each row must be whole 16-byte vectors)";
    if (a.x == nullptr) return "sm90 sparse GEMM: x is null";
    if (a.values == nullptr) return "sm90 sparse GEMM: values is null";
    if (a.meta == nullptr) return "sm90 sparse GEMM: meta is null";
    if (a.out == nullptr) return "sm90 sparse GEMM: out is null";
    // TMA: global base addresses 16-byte aligned.
    if (!aligned(a.x, 16)) return "sm90 sparse GEMM: x must be 16-byte aligned (TMA)";
    if (!aligned(a.values, 16)) return "sm90 sparse GEMM: values must be 16-byte aligned (TMA)";
    if (!aligned(a.meta, 16)) return "sm90 sparse GEMM: meta must be 16-byte aligned (TMA)";
    if (!aligned(a.out, 16)) return "sm90 sparse GEMM: out must be 16-byte aligned (TMA store)";
    // Bias: the fusion is declared with AlignmentBias = 16 bytes (vector loads).
    if (a.bias != nullptr && !aligned(a.bias, kAlignmentBias * kBitsD / 8))
      return "sm90 sparse GEMM: bias must be 16-byte aligned";
    if (a.alpha != nullptr && !aligned(a.alpha, alignof(float))) return "sm90 sparse GEMM: alpha must be 4-byte aligned";
    return check_knobs(a.knobs, /*scheduler_knobs=*/true, kPromotionStep);
  }

  using RasterOrder = decltype(Arguments{}.scheduler.raster_order);
  static constexpr RasterOrder raster_order(int raster) {
    switch (raster) {
      case kRasterAlongM: return RasterOrder::AlongM;
      case kRasterAlongN: return RasterOrder::AlongN;
      default: return RasterOrder::Heuristic;
    }
  }

  // CUTLASS arguments. Touches no device state (sm_count = 0 is only read by initialize()).
  static Arguments make_arguments(const SparseLinearArgs& a, int device_id = 0, int sm_count = 0) {
    const int M = static_cast<int>(a.M), N = static_cast<int>(a.N), K = static_cast<int>(a.K);
    const ProblemShape problem{M, N, K, 1};

    Arguments args{};
    args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    args.problem_shape = problem;

    // Exactly the layouts the mainloop's can_implement compares against.
    args.mainloop.ptr_A = static_cast<const ElementA*>(a.values);
    args.mainloop.layout_a = SparseConfig::fill_layoutA(problem);
    args.mainloop.ptr_B = static_cast<const ElementB*>(a.x);
    StrideB dB{};
    cute::get<0>(dB) = static_cast<int64_t>(K);  // next n (row of x): K elements; k contiguous
    cute::get<2>(dB) = 0;                        // L = 1
    args.mainloop.dB = dB;
    args.mainloop.ptr_E = static_cast<const ElementE*>(a.meta);
    args.mainloop.layout_e = SparseConfig::fill_layoutE(problem);

    auto& fusion = args.epilogue.thread;
    fusion.alpha = ElementScalar(1);
    fusion.alpha_ptr = a.alpha;  // nullptr: use fusion.alpha
    fusion.beta = ElementScalar(0);
    fusion.beta_ptr = nullptr;  // required by a void-C epilogue's can_implement
    fusion.bias_ptr = static_cast<const ElementBias*>(a.bias);  // nullptr: bias = 0 (null_default)

    args.epilogue.ptr_C = nullptr;
    args.epilogue.dC = StrideC{};
    args.epilogue.ptr_D = static_cast<const ElementD*>(a.out);
    StrideD dD{};
    cute::get<1>(dD) = static_cast<int64_t>(M);  // next n (row of out): M elements; m contiguous
    cute::get<2>(dD) = 0;
    args.epilogue.dD = dD;

    // Run-time knobs (checked by check_args); 0 keeps CUTLASS's default.
    args.scheduler.raster_order = raster_order(a.knobs.raster);
    if (a.knobs.swizzle != 0) args.scheduler.max_swizzle_size = a.knobs.swizzle;
    if constexpr (kPromotes) {
      if (a.knobs.promotion != 0) args.mainloop.mma_promotion_interval = static_cast<uint32_t>(a.knobs.promotion);
    }

    args.hw_info.device_id = device_id;
    args.hw_info.sm_count = sm_count;
    return args;
  }

  static Status cutlass_status_message(cutlass::Status s) {
    switch (s) {
      case cutlass::Status::kSuccess: return nullptr;
      case cutlass::Status::kErrorMisalignedOperand: return "sm90 sparse GEMM (CUTLASS): misaligned operand";
      case cutlass::Status::kErrorInvalidDataType: return "sm90 sparse GEMM (CUTLASS): invalid data type";
      case cutlass::Status::kErrorInvalidLayout: return "sm90 sparse GEMM (CUTLASS): invalid layout";
      case cutlass::Status::kErrorInvalidProblem: return "sm90 sparse GEMM (CUTLASS): invalid problem";
      case cutlass::Status::kErrorNotSupported: return "sm90 sparse GEMM (CUTLASS): not supported";
      case cutlass::Status::kErrorWorkspaceNull: return "sm90 sparse GEMM (CUTLASS): workspace is null";
      case cutlass::Status::kErrorInternal:
        return "sm90 sparse GEMM (CUTLASS): internal error (cudaFuncSetAttribute or the cluster kernel launch failed; "
               "see cudaGetLastError)";
      case cutlass::Status::kErrorArchMismatch: return "sm90 sparse GEMM (CUTLASS): architecture mismatch";
      case cutlass::Status::kErrorInsufficientDriver: return "sm90 sparse GEMM (CUTLASS): insufficient driver";
      case cutlass::Status::kErrorMemoryAllocation: return "sm90 sparse GEMM (CUTLASS): memory allocation failed";
      case cutlass::Status::kInvalid:
        return "sm90 sparse GEMM (CUTLASS): kernel launch rejected (invalid cluster/grid configuration)";
      default: return "sm90 sparse GEMM (CUTLASS): unknown error";
    }
  }

  // ---- SparseGemmKernel entry points -----------------------------------------------------
  // Host only: safe on a machine without a GPU.
  static Status can_implement(const SparseLinearArgs& a) {
    if (Status s = check_args(a)) return s;
    const Arguments args = make_arguments(a);
    if (Gemm::can_implement(args) != cutlass::Status::kSuccess)
      return "sm90 sparse GEMM: CUTLASS can_implement rejected the problem "
             "(TMA alignment of A/B/D or the compressed layouts)";
    return nullptr;
  }

  static size_t workspace_bytes(const SparseLinearArgs& a) {
    if (check_args(a) != nullptr) return 0;
    return Gemm::get_workspace_size(make_arguments(a));
  }

  static Status run(const SparseLinearArgs& a) {
    if (Status s = can_implement(a)) return s;
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) {
      (void)cudaGetLastError();
      return "sm90 sparse GEMM: no current CUDA device";
    }
    int major = 0, sm_count = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      (void)cudaGetLastError();
      return "sm90 sparse GEMM: cannot query the CUDA device";
    }
    if (major != 9) return "sm90 sparse GEMM: needs a compute capability 9.x (Hopper, sm_90a) device";
    const Arguments args = make_arguments(a, device, sm_count);
    if (Gemm::get_workspace_size(args) > 0 && a.workspace == nullptr)
      return "sm90 sparse GEMM: workspace is null but workspace_bytes() > 0";
    Gemm gemm;
    if (Status s = cutlass_status_message(gemm.initialize(args, a.workspace, a.stream))) return s;
    return cutlass_status_message(gemm.run(a.stream));
  }

  // The image of the kernel GemmUniversalAdapter launches, for the current device.
  static KernelImage image() {
    cudaFuncAttributes attr{};
    const cudaError_t err = cudaFuncGetAttributes(&attr, cutlass::device_kernel<GemmKernel>);
    if (err != cudaSuccess) (void)cudaGetLastError();  // not sticky: clear it for the next launch check
    return KernelImage{err, attr.ptxVersion, attr.binaryVersion};
  }
};

// The registry entry of one instantiation. Every SM90 kernel consumes the "sm90" layout,
// fuses the per-row bias and writes y [N, M] row-major directly.
template <class Gemm>
constexpr SparseGemmKernel make_sm90_kernel(const char* name) {
  using Tile = typename Gemm::TileShape;
  using Cluster = typename Gemm::ClusterShape;
  static_assert(cute::size<2>(Cluster{}) == 1, "clusters along K are not used");
  return SparseGemmKernel{name,
                          /*sm=*/90,
                          /*sm90_layout=*/true,
                          element_of<typename Gemm::ElementA>(),
                          element_of<typename Gemm::ElementB>(),
                          element_of<typename Gemm::ElementD>(),
                          /*has_bias=*/true,
                          /*out_is_transposed=*/false,
                          int(cute::size<0>(Tile{})),
                          int(cute::size<1>(Tile{})),
                          int(cute::size<2>(Tile{})),
                          &Gemm::can_implement,
                          &Gemm::workspace_bytes,
                          &Gemm::run,
                          &Gemm::image,
                          int(cute::size<0>(Cluster{})),
                          int(cute::size<1>(Cluster{})),
                          Gemm::kFastAccum  ? Accumulation::kFp8FastAccum
                          : Gemm::kPromotes ? Accumulation::kFp8Promoted
                                            : Accumulation::kF32,
                          /*scheduler_knobs=*/true,
                          Gemm::kPromotionStep,
                          Gemm::CollectiveMainloop::DispatchPolicy::Stages,
                          int(Gemm::GemmKernel::SharedStorageSize),
                          /*knobs=*/GemmKnobs{}};
}

}  // namespace s_ste::gemm::sm90
