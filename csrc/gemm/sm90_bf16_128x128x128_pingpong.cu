// SM90 2:4 sparse GEMM, bf16 x bf16 -> bf16 (f32 accumulate), fused per-row bias and alpha:
// tile 128x128x128, cluster 2x1x1, Pingpong. A tuning candidate (issue 19): chosen where the
// device's tuning table measured it fastest; the heuristic ranks it after the cooperative tile
// of the same shape (sm90_bf16.cu), which it ties on wave efficiency.
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// Why Pingpong at 128 rows: the same tile, operand traffic and stage count (4) as the
// cooperative kernel, but each of the two consumer warpgroups owns a whole 128x128 tile and
// the two alternate, so one tile's epilogue (bias, alpha, bf16 store) overlaps the other's
// mainloop. That overlap matters most for short K (few k-tiles per tile) and many-tile
// problems, where the cooperative kernel idles its tensor cores during every epilogue.
// Each consumer holds 128x128 f32 accumulators (128 registers per thread; no promotion for
// bf16), inside the Pingpong consumers' register budget (ptxas: 0 spills, csrc/gemm/README.md).
// TileK = 128 keeps the metadata layout of layout_sm90.cuh (static_asserted in
// sm90_sparse_gemm.cuh). Cluster 2x1x1 for the reasons of sm90_bf16.cu (B = x multicast,
// clusters along M = out_features).
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Gemm = sm90::SparseGemm<cutlass::bfloat16_t, cutlass::bfloat16_t, cutlass::bfloat16_t,
                              cute::Shape<cute::_128, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                              cutlass::gemm::KernelTmaWarpSpecializedPingpong, cutlass::epilogue::TmaWarpSpecialized>;

// One sparse bf16 wgmma atom (m64n128k32) per warpgroup, repeated over the tile's 128 rows.
static_assert(std::is_same_v<typename Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x32_F32BF16BF16_SS<
                                 cute::GMMA::Major::K, cute::GMMA::Major::K>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x32_F32BF16BF16_SS (K-major A and B)");
static_assert(Gemm::CollectiveMainloop::DispatchPolicy::Stages >= 4, "fewer mainloop stages than the compile probe's 4");
}  // namespace

extern constinit const SparseGemmKernel kSm90Bf16Pingpong128 =
    sm90::make_sm90_kernel<Gemm>("sm90_bf16_128x128x128_c2x1_pingpong");

}  // namespace s_ste::gemm
