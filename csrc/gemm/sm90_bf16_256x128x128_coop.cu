// SM90 2:4 sparse GEMM, bf16 x bf16 -> bf16 (f32 accumulate), fused per-row bias and alpha:
// tile 256x128x128, cluster 2x1x1, cooperative. A tuning candidate (issue 19): chosen where the
// device's tuning table measured it fastest (the heuristic prefers sm90_bf16.cu's 128-row tile
// unless this one's wave efficiency is clearly better).
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// Why: per k-tile a CTA loads A values 256x64 bf16 (32 KiB) + metadata (4 KiB) + the dense B
// tile 128x128 (32 KiB), half of it multicast to the cluster peer: the lowest L2->SM traffic per
// FLOP of the TileK = 128 bf16 tiles (about 52 against 68 B/clk/SM for 128x128 at the sparse
// peak; ../shared/notes/sm90-tuning.md section 2.4). Each of the two cooperative warpgroups holds
// 128x128 f32 accumulators (128 registers, no promotion for bf16). Cost: 3 pipeline stages
// instead of 4, and coarser wave quantisation (256-row tiles): it pays at large M x N, e.g.
// T >= 16k tokens with M >= 4096 (>= 2048 tiles, >= 15 waves on 132 SMs).
// TileK = 128 keeps the metadata layout of layout_sm90.cuh (static_asserted in
// sm90_sparse_gemm.cuh). Cluster 2x1x1 as in sm90_bf16.cu.
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Gemm = sm90::SparseGemm<cutlass::bfloat16_t, cutlass::bfloat16_t, cutlass::bfloat16_t,
                              cute::Shape<cute::_256, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                              cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                              cutlass::epilogue::TmaWarpSpecializedCooperative>;

static_assert(std::is_same_v<typename Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x32_F32BF16BF16_SS<
                                 cute::GMMA::Major::K, cute::GMMA::Major::K>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x32_F32BF16BF16_SS (K-major A and B)");
static_assert(Gemm::CollectiveMainloop::DispatchPolicy::Stages >= 3, "fewer mainloop stages than the compile probe's 3");
}  // namespace

extern constinit const SparseGemmKernel kSm90Bf16Coop256 =
    sm90::make_sm90_kernel<Gemm>("sm90_bf16_256x128x128_c2x1_coop");

}  // namespace s_ste::gemm
