// SM90 2:4 sparse GEMM, bf16 x bf16 -> bf16 (f32 accumulate), fused per-row bias and alpha:
// the small-problem member of the bf16 set (tile 64x128x128, Pingpong schedule).
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// Purpose: problems too small to fill the GPU with 128-row tiles (ceil(M/128)*ceil(N/128)
// below the SM count; the selector prefers this kernel there). Halving TileM doubles the
// number of tiles, hence of busy SMs, for the same problem.
//
// Tile 64x128x128: TileK = 128 keeps the metadata layout of layout_sm90.cuh (MinTileK =
// kMinTileK16 = 128, static_asserted in sm90_sparse_gemm.cuh). TileM = 64 is below the
// cooperative minimum (two consumer warpgroups x 64 rows), so the schedule is Pingpong: each
// of the two consumer warpgroups owns a whole 64x128 tile (one sparse GMMA
// m64n128k32 atom, TiledMma 1x1x1, 64 f32 accumulators per thread) and the two alternate
// between mainloop and epilogue on different tiles. The matching epilogue schedule is the
// non-cooperative cutlass::epilogue::TmaWarpSpecialized (epilogue tile 64x32).
// Per pipeline stage a CTA loads A values 64x64 bf16 (8 KiB) + metadata (1 KiB) + a dense B
// tile 128x128 bf16 (32 KiB).
//
// Cluster 2x1x1 (the two CTAs of a cluster take neighbouring tiles along M and share the B =
// x tile by TMA multicast), as the cooperative members:
//  - with TileM = 64 the B tile is 32 of the 41 KiB a CTA loads per stage; multicast cuts
//    that to 25 KiB (-39% L2->SM traffic), which matters most for this small-M tile whose
//    MMA work per loaded byte is half that of a 128x128 tile;
//  - clusters pair tiles along M = out_features (plenty of 64-row tiles in practice), never
//    along N = tokens, which is the small dimension in the inference / small-batch problems
//    this kernel serves (1x2x1 would idle half the CTAs when N <= 128);
//  - Hopper GPCs are made of whole TPCs (2 SMs each), so 2-CTA clusters should be able to
//    cover every SM (cudaOccupancyMaxActiveClusters not yet checked on a GPU).
//  Costs: the M tile count is rounded up to even (M % 128 in [1, 64] launches one CTA per N
//  tile with an empty, fully out-of-bounds tile, e.g. M = 64 runs 2 CTAs for 1 tile), and
//  the two CTAs advance their pipelines in lockstep. In the decode regime (N <= 128) the
//  kernel is bound by the A (weight) stream, which multicast along M does not share; there
//  1x1x1 would be as good. (Not yet measured against 1x1x1 on a GPU.)
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Sm90Bf16PingpongGemm =
    sm90::SparseGemm<cutlass::bfloat16_t, cutlass::bfloat16_t, cutlass::bfloat16_t,
                     cute::Shape<cute::_64, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                     cutlass::gemm::KernelTmaWarpSpecializedPingpong, cutlass::epilogue::TmaWarpSpecialized>;

// The mainloop issues one sparse bf16 wgmma (m64n128k32, f32 += bf16 x bf16, smem x smem, both K-major)
// per warpgroup: a 1x1x1 atom layout, i.e. one consumer warpgroup per 64x128 tile.
static_assert(std::is_same_v<typename Sm90Bf16PingpongGemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x32_F32BF16BF16_SS<
                                 cute::GMMA::Major::K, cute::GMMA::Major::K>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x32_F32BF16BF16_SS (K-major A and B)");
static_assert(Sm90Bf16PingpongGemm::CollectiveMainloop::DispatchPolicy::Stages >= 4,
              "fewer mainloop stages than expected for a 41 KiB stage");
}  // namespace

extern constinit const SparseGemmKernel kSm90Bf16Pingpong = sm90::make_sm90_kernel<Sm90Bf16PingpongGemm>("sm90_bf16_64x128x128_c2x1_pingpong");

}  // namespace s_ste::gemm
