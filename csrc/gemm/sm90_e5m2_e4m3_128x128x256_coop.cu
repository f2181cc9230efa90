// SM90 2:4 sparse GEMM, e5m2 x e4m3 -> bf16 (f32 accumulate, promoted), fused per-row bias and
// alpha: the FP8 weight-gradient product (A = the MVUE gradient in E5M2, B = x in E4M3, K =
// tokens, 16k-64k in training) with tile 128x128x256, cluster 2x1x1, cooperative. A tuning
// candidate (issue 19), as accurate as sm90_e5m2_e4m3.cu.
// One CUTLASS instantiation per translation unit; no torch headers here (compile time).
//
// Why K = 256: the reduction runs over the token count, the longest K of the training step, and
// the sparse mainloop drains its wgmmas once per k-tile (K_PIPE_MMAS = 0): a 256-long k-tile
// halves the drains at the same operand traffic per FLOP. The largest promoting tile without
// spills (see sm90_e4m3_128x128x256_coop.cu). Never FastAccum for this product: its K is the
// longest, and S-STE needs near-exact weight gradients (csrc/gemm/README.md).
// The MMA is the mixed-FP8 sparse wgmma m64n128k64.f32.e5m2.e4m3 (see sm90_e5m2_e4m3.cu).
#include "sm90_sparse_gemm.cuh"

namespace s_ste::gemm {

namespace {
using Gemm = sm90::SparseGemm<cutlass::float_e5m2_t, cutlass::float_e4m3_t, cutlass::bfloat16_t,
                              cute::Shape<cute::_128, cute::_128, cute::_256>, cute::Shape<cute::_2, cute::_1, cute::_1>,
                              cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                              cutlass::epilogue::TmaWarpSpecializedCooperative>;

static_assert(std::is_same_v<typename Gemm::CollectiveMainloop::TiledMma::Atom,
                             cute::MMA_Atom<cute::SM90::GMMA::SPARSE::GMMA_64x128x64_F32E5M2E4M3_SS_TN<>>>,
              "unexpected MMA atom: expected the sparse GMMA_64x128x64_F32E5M2E4M3_SS_TN");
static_assert(Gemm::kPromotes && Gemm::kPromotionStep == 4, "the weight gradient must promote");
static_assert(Gemm::CollectiveMainloop::DispatchPolicy::Stages >= 4, "fewer mainloop stages than the compile probe's 4");
}  // namespace

extern constinit const SparseGemmKernel kSm90E5m2E4m3Coop256K =
    sm90::make_sm90_kernel<Gemm>("sm90_e5m2_e4m3_128x128x256_c2x1_coop");

}  // namespace s_ste::gemm
