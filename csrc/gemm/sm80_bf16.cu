// SM80 2:4 sparse GEMM, bf16 in / bf16 out, fp32 accumulation, tile 128x128x64, 3 stages.
// One CUTLASS instantiation per translation unit; no torch headers (see README.md).
#include "knobs.h"
#include "sm80_sparse_gemm.cuh"

namespace s_ste::gemm {

template struct sm80::SparseGemmSm80<cutlass::bfloat16_t>;

// No run-time knobs (a CUTLASS 2.x kernel): non-zero GemmKnobs are rejected by name.
extern constinit const SparseGemmKernel kSm80Bf16 =
    knob_free<sm80::SparseGemmSm80<cutlass::bfloat16_t>>(sm80::make_sm80_kernel<cutlass::bfloat16_t>("sm80_bf16_128x128x64"));

}  // namespace s_ste::gemm
