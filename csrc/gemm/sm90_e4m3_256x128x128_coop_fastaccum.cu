// SM90 2:4 sparse GEMM, e4m3 x e4m3 -> bf16, FP8 FastAccum, fused per-row bias and alpha: the
// FP8 forward product with tile 256x128x128, cluster 2x1x1, cooperative (CUTLASS's own large
// sparse FP8 tile). A tuning candidate (issue 19).
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// FastAccum (no promotion: all of K in the tensor core's FP8 accumulator): never chosen by the
// heuristic, only by a measured table row that passed the FP8 accuracy rule, and e4m3 x e4m3
// (forward) only; see sm90_e4m3_128x256x128_coop_fastaccum.cu and csrc/gemm/README.md.
// Why this tile: 256-row A tiles, each cooperative warpgroup 128x128 accumulators; 5 stages
// at 36 KiB per stage. With promotion it would spill (756 bytes in the compile probes).
// TileK = 128 keeps the metadata layout of layout_sm90.cuh.
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Gemm = sm90::SparseGemm<cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                              cute::Shape<cute::_256, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                              cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                              cutlass::epilogue::TmaWarpSpecializedCooperative>;

static_assert(std::is_same_v<typename Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x64_F32E4M3E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x64_F32E4M3E4M3_SS_TN");
static_assert(Gemm::kFastAccum && !Gemm::kPromotes, "a FastAccum kernel");
static_assert(Gemm::CollectiveMainloop::DispatchPolicy::Stages >= 5, "fewer mainloop stages than the compile probe's 5");
}  // namespace

extern constinit const SparseGemmKernel kSm90E4m3FastCoop256x128 =
    sm90::make_sm90_kernel<Gemm>("sm90_e4m3_256x128x128_c2x1_coop_fastaccum");

}  // namespace s_ste::gemm
