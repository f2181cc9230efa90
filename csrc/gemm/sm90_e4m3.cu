// SM90 2:4 sparse GEMM, e4m3 x e4m3 -> bf16 (f32 accumulate), fused per-row bias and alpha:
// the forward FP8 GEMM  y = alpha * (x_e4m3 . W_e4m3^T) + bias, with alpha = args.alpha, a
// device pointer to the product of the two per-tensor dequantization scales (null -> 1).
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// A = Â values (e4m3, sparse, K-major [M, K/2]), B = x (e4m3, K-major [N, K]): FP8 wgmma
// needs both operands K-major, which these are. The sparse GMMA the builder selects is
// SM90::GMMA::SPARSE::GMMA_64x128x64_F32E4M3E4M3_SS_TN
// (wgmma.mma_async.sp.sync.aligned.m64n128k64.f32.e4m3.e4m3).
//
// Tile 128x128x128: TileK = 128 keeps the metadata layout of layout_sm90.cuh (MinTileK =
// kMinTileK8 = 128, static_asserted in sm90_sparse_gemm.cuh), and it is the K tile CUTLASS's
// own profiler generates for sparse FP8 (the dense FP8 K tile; cutlass_library halves the
// 2x sparse MMA-K "to afford more smem stages"): per stage 8 KiB of A values + 2 KiB of
// metadata + 16 KiB of B, so more stages than a 128x128x256 tile would get.
// TileM = 128 is the minimum of the cooperative schedule. Cluster 2x1x1 as in sm90_bf16.cu
// (the larger B tile is multicast; clusters pair tiles along M = out_features, so small N
// does not idle half of the CTAs).
//
// Mainloop schedule: KernelTmaWarpSpecializedCooperative, NOT ...CooperativeFP8FastAccum.
// With FP8 inputs the builder maps it to MainloopSm90TmaGmmaWarpSpecializedSparseFP8, which
// accumulates each group of mma_promotion_interval = 4 wgmmas (4 x 64 = 256 logical k) in a
// temporary and adds it into separate f32 accumulators (GmmaFP8Accumulation). The FP8
// tensor-core accumulator keeps fewer mantissa bits than IEEE f32, so without promotion
// (FastAccum) the error grows with K; S-STE trains on these products and the weight-gradient
// GEMM reduces over K = tokens (up to 64k), so we take the accurate path by default. Whether
// FastAccum is good enough for the forward GEMM (K = in_features) must be decided by accuracy
// tests on a GPU against an f32 reference, not assumed: the FastAccum instantiations
// (sm90_e4m3_*_fastaccum.cu) are reached only through a tuning table row whose accuracy check
// passed on the device (csrc/gemm/README.md).
// (Tile and cluster not yet measured on a GPU.)
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Sm90E4m3Gemm =
    sm90::SparseGemm<cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                     cute::Shape<cute::_128, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                     cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                     cutlass::epilogue::TmaWarpSpecializedCooperative>;

// The mainloop issues the sparse FP8 wgmma (m64n128k64, f32 += e4m3 x e4m3, smem x smem), A as
// sparse_elem<2, float_e4m3_t> with byte metadata.
static_assert(std::is_same_v<typename Sm90E4m3Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x64_F32E4M3E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x64_F32E4M3E4M3_SS_TN");
}  // namespace

extern constinit const SparseGemmKernel kSm90E4m3 =
    sm90::make_sm90_kernel<Sm90E4m3Gemm>("sm90_e4m3_128x128x128_c2x1_coop");

}  // namespace s_ste::gemm
