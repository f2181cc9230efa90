// SM90 2:4 sparse GEMM, bf16 x bf16 -> bf16 (f32 accumulate), fused per-row bias and alpha.
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// Tile 128x128x128: TileK = 128 gives the metadata layout fixed in layout_sm90.cuh
// (MinTileK = 128); TileM = 128 is the minimum of the cooperative schedule (two consumer
// warpgroups of 64 rows each).
// Cluster 2x1x1 (two CTAs along M share, by TMA multicast, the tile of x = B they both read):
//  - per pipeline stage a CTA loads A values 128x64 bf16 (16 KiB) + metadata (2 KiB) and a
//    dense B tile 128x128 bf16 (32 KiB); multicasting the larger B tile saves more L2->SM
//    traffic than multicasting A (1x2x1): 34 KiB vs 41 KiB per CTA per stage;
//  - a cluster pairs tiles along M = out_features (a multiple of 256 in practically every
//    model), whereas 1x2x1 pairs tiles along N = tokens: with N <= 128 (inference / small
//    batches) the second CTA of every 1x2 cluster would compute an empty tile, idling half
//    of the launched CTAs.
// (Not yet measured against 1x2x1 on a GPU.)
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Sm90Bf16Gemm =
    sm90::SparseGemm<cutlass::bfloat16_t, cutlass::bfloat16_t, cutlass::bfloat16_t,
                     cute::Shape<cute::_128, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                     cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                     cutlass::epilogue::TmaWarpSpecializedCooperative>;
}  // namespace

extern constinit const SparseGemmKernel kSm90Bf16 =
    sm90::make_sm90_kernel<Sm90Bf16Gemm>("sm90_bf16_128x128x128_c2x1_coop");

}  // namespace s_ste::gemm
