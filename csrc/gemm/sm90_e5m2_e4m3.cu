// SM90 2:4 sparse GEMM, e5m2 x e4m3 -> bf16 (f32 accumulate), fused per-row bias and alpha:
// the weight-gradient FP8 GEMM. A = the MVUE-sparsified output gradient in E5M2 (sparse,
// K-major: its compressed transposed copy), B = x in E4M3 (K-major: its transposed copy), so
// K = tokens; alpha = args.alpha, a device pointer to the product of the two dequantization
// scales (null -> 1). One CUTLASS instantiation per translation unit; no torch headers here.
//
// Mixed FP8 pair: CUTLASS 4.2 has it. cute::GMMA::ss_op_selector_sparse (cute/arch/mma_sm90.hpp,
// F32 accumulator, "Input A: float_e5m2_t ; Input B: float_e4m3_t", both K-major, Tile_K % 64)
// returns SM90::GMMA::SPARSE::GMMA_64x128x64_F32E5M2E4M3_SS_TN for Tile_N = 128, i.e.
// wgmma.mma_async.sp.sync.aligned.m64n128k64.f32.e5m2.e4m3 (cute/arch/mma_sm90_gmma_sparse.hpp),
// whose MMA_Traits have ValTypeA = sparse_elem<2, float_e5m2_t>, ValTypeE = sparse_elem<8,
// uint8_t>, ValTypeB = float_e4m3_t; detail::is_input_fp8<A, B> accepts any e4m3/e5m2 mix, so
// the builder picks the FP8 mainloop. The static_asserts below pin all of that.
//
// Tile 128x128x128, cluster 2x1x1, cooperative: as sm90_e4m3.cu (TileK = 128 keeps the
// 8-bit metadata layout of layout_sm90.cuh, MinTileK = 128; CUTLASS's profiler K tile for
// sparse FP8; TileM = 128 is the cooperative minimum).
//
// Mainloop schedule: KernelTmaWarpSpecializedCooperative, NOT ...CooperativeFP8FastAccum.
// With FP8 inputs the builder maps it to MainloopSm90TmaGmmaWarpSpecializedSparseFP8, which
// accumulates each group of mma_promotion_interval = 4 wgmmas (4 x 64 = 256 logical k) in a
// temporary and adds it into separate f32 accumulators (GmmaFP8Accumulation). The FP8
// tensor-core accumulator keeps fewer mantissa bits than IEEE f32, so without promotion
// (FastAccum) the error grows with K — and here K = tokens, up to 64k: S-STE needs
// near-exact weight gradients, so the accurate path is the default. A FastAccum variant may
// only be shipped once accuracy tests on a GPU (against an f32 reference, at the largest K)
// show it is good enough; it would be a separate instantiation.
// (Tile and cluster not yet measured on a GPU.)
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Sm90E5m2E4m3Gemm =
    sm90::SparseGemm<cutlass::float_e5m2_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                     cute::Shape<cute::_128, cute::_128, cute::_128>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                     cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                     cutlass::epilogue::TmaWarpSpecializedCooperative>;

// The mainloop issues the sparse FP8 wgmma (m64n128k64, f32 += e5m2 x e4m3, smem x smem), A as
// sparse_elem<2, float_e5m2_t> with byte metadata.
static_assert(std::is_same_v<typename Sm90E5m2E4m3Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x64_F32E5M2E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x64_F32E5M2E4M3_SS_TN");
}  // namespace

extern constinit const SparseGemmKernel kSm90E5m2E4m3 =
    sm90::make_sm90_kernel<Sm90E5m2E4m3Gemm>("sm90_e5m2_e4m3_128x128x128_c2x1_coop");

}  // namespace s_ste::gemm
