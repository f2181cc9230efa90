// SM90 2:4 sparse GEMM, e4m3 x e4m3 -> bf16 (f32 accumulate, promoted), fused per-row bias and
// alpha: the FP8 forward product with tile 128x128x256, cluster 2x1x1, cooperative. A tuning
// candidate (issue 19), as accurate as sm90_e4m3.cu.
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// Why K = 256: the sparse mainloop drains its wgmmas at every k-tile before it loads the next
// k-tile's metadata (K_PIPE_MMAS = 0 in CUTLASS 4.2's sparse collectives), so a k-tile twice as
// long halves those drains per K, at the same operand traffic per FLOP as 128x128x128. It is the
// largest promoting FP8 tile without spills (each cooperative warpgroup holds 64x128
// accumulators plus their promotion copy; compile probes: 4 stages, 0 spills; larger tiles
// spill 740-836 bytes with promotion).
// Schedule KernelTmaWarpSpecializedCooperative (not FastAccum): the builder picks the promoting
// MainloopSm90TmaGmmaWarpSpecializedSparseFP8 (static_asserted in sm90_sparse_gemm.cuh), every
// GemmKnobs::promotion wgmmas (default 4 = 256 logical k; here a multiple of 4 = TileK / 64).
// TileK = 256 >= 128 keeps MinTileK = 128, the metadata layout of layout_sm90.cuh.
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Gemm = sm90::SparseGemm<cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                              cute::Shape<cute::_128, cute::_128, cute::_256>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                              cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                              cutlass::epilogue::TmaWarpSpecializedCooperative>;

static_assert(std::is_same_v<typename Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x64_F32E4M3E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x64_F32E4M3E4M3_SS_TN");
static_assert(Gemm::kPromotionStep == 4, "TileK 256 issues 4 wgmmas per k-tile");
static_assert(Gemm::CollectiveMainloop::DispatchPolicy::Stages >= 4, "fewer mainloop stages than the compile probe's 4");
}  // namespace

extern constinit const SparseGemmKernel kSm90E4m3Coop256K =
    sm90::make_sm90_kernel<Gemm>("sm90_e4m3_128x128x256_c2x1_coop");

}  // namespace s_ste::gemm
