// SM90 2:4 sparse GEMM, e4m3 x e4m3 -> bf16 (f32 accumulate), fused per-row bias and alpha:
// the small-problem member of the FP8 forward set (tile 64x128x128, Pingpong schedule),
//   y = alpha * (x_e4m3 . W_e4m3^T) + bias,  alpha = args.alpha (device pointer, null -> 1).
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// Purpose: problems too small to fill the GPU with 128-row tiles (ceil(M/128)*ceil(N/128)
// below the SM count; the selector prefers this kernel there). Halving TileM doubles the
// number of tiles, hence of busy SMs, for the same problem.
//
// A = Â values (e4m3, sparse, K-major [M, K/2]), B = x (e4m3, K-major [N, K]), as in
// sm90_e4m3.cu. The sparse GMMA is SM90::GMMA::SPARSE::GMMA_64x128x64_F32E4M3E4M3_SS_TN
// (wgmma.mma_async.sp.sync.aligned.m64n128k64.f32.e4m3.e4m3), one per warpgroup (TiledMma
// 1x1x1): each of the two Pingpong consumer warpgroups owns a whole 64x128 tile.
//
// Tile 64x128x128: TileK = 128 keeps the metadata layout of layout_sm90.cuh (MinTileK =
// kMinTileK8 = 128, static_asserted in sm90_sparse_gemm.cuh). TileM = 64 is below the
// cooperative minimum, so the schedule is Pingpong, with the matching non-cooperative epilogue
// cutlass::epilogue::TmaWarpSpecialized (epilogue tile 64x32 for the bf16 output).
// Per stage: A values 64x64 e4m3 (4 KiB) + metadata (1 KiB) + B 128x128 e4m3 (16 KiB).
//
// Mainloop schedule: KernelTmaWarpSpecializedPingpong, NOT ...PingpongFP8FastAccum: with FP8
// inputs the builder maps it to MainloopSm90TmaGmmaWarpSpecializedSparseFP8 (static_asserted
// below), which promotes the tensor-core partial sums into separate f32 accumulators every
// mma_promotion_interval = 4 wgmmas (GmmaFP8Accumulation); the reasons are those of
// sm90_e4m3.cu (FastAccum would be a separate instantiation, to be decided by GPU accuracy
// tests). With Pingpong each consumer warpgroup holds its own 64x128 tile, so the promotion
// costs 64 extra f32 registers per thread (128 accumulators in all), well within the
// Pingpong consumers' register budget.
//
// Cluster 2x1x1, for the reasons given in sm90_bf16_64x128x128_pingpong.cu: the CTA pair
// shares the B = x tile (16 of the 21 KiB a CTA loads per stage) by TMA multicast, and
// clusters pair tiles along M = out_features, never along the possibly tiny N = tokens. Cost:
// an odd number of 64-row M tiles launches one idle (out-of-bounds) CTA per N tile.
// (Not yet measured against 1x1x1 on a GPU.)
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Sm90E4m3PingpongGemm =
    sm90::SparseGemm<cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                     cute::Shape<cute::_64, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                     cutlass::gemm::KernelTmaWarpSpecializedPingpong, cutlass::epilogue::TmaWarpSpecialized>;

// The mainloop issues the sparse FP8 wgmma (m64n128k64, f32 += e4m3 x e4m3, smem x smem), one
// warpgroup per tile, A as sparse_elem<2, float_e4m3_t> with byte metadata.
static_assert(std::is_same_v<typename Sm90E4m3PingpongGemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x64_F32E4M3E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x64_F32E4M3E4M3_SS_TN");
}  // namespace

extern constinit const SparseGemmKernel kSm90E4m3Pingpong = sm90::make_sm90_kernel<Sm90E4m3PingpongGemm>("sm90_e4m3_64x128x128_c2x1_pingpong");

}  // namespace s_ste::gemm
