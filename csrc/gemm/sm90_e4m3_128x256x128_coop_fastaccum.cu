// SM90 2:4 sparse GEMM, e4m3 x e4m3 -> bf16, FP8 FastAccum, fused per-row bias and alpha: the
// FP8 forward product with tile 128x256x128, cluster 2x1x1, cooperative (the xFormers /
// torchao activation-2:4 production configuration). A tuning candidate (issue 19).
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// FastAccum: KernelTmaWarpSpecializedCooperativeFP8FastAccum makes the builder pick the plain
// sparse mainloop (static_asserted in sm90_sparse_gemm.cuh): all of K accumulates in the
// tensor core's FP8 accumulator, which keeps fewer mantissa bits than f32, with no promotion
// into f32 registers. Its error grows with K, so this kernel is
//   - never chosen by the heuristic (Accumulation::kFp8FastAccum), only by a row of a tuning
//     table measured on the device, which bench/tune_gemm.py writes only where the kernel's
//     result passed the FP8 accuracy rule against float64 at that shape (csrc/gemm/README.md,
//     "FastAccum");
//   - e4m3 x e4m3 only, i.e. the forward product: the weight gradient (e5m2 x e4m3, K = tokens)
//     can never select it.
// Why this tile: B (x) tile 256 wide, so the L2->SM traffic per FLOP is ~25 % below 128x128
// (52 vs 72 B/clk/SM at the sparse peak); with promotion it would spill (740 bytes in the
// compile probes), FastAccum has 0 spills and 4 stages. TileK = 128 keeps the metadata layout
// of layout_sm90.cuh.
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Gemm = sm90::SparseGemm<cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                              cute::Shape<cute::_128, cute::_256, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                              cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                              cutlass::epilogue::TmaWarpSpecializedCooperative>;

static_assert(std::is_same_v<typename Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x256x64_F32E4M3E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x256x64_F32E4M3E4M3_SS_TN");
static_assert(Gemm::kFastAccum && !Gemm::kPromotes, "a FastAccum kernel");
static_assert(Gemm::CollectiveMainloop::DispatchPolicy::Stages >= 4, "fewer mainloop stages than the compile probe's 4");
}  // namespace

extern constinit const SparseGemmKernel kSm90E4m3FastCoop128x256 =
    sm90::make_sm90_kernel<Gemm>("sm90_e4m3_128x256x128_c2x1_coop_fastaccum");

}  // namespace s_ste::gemm
