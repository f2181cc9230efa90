// The rule for GemmKnobs (sparse_gemm.h), written once: which values a kernel takes, and the
// reason can_implement returns for one it does not. Plain C++, no CUDA and no CUTLASS.
#pragma once
#include "sparse_gemm.h"

namespace s_ste::gemm {

// The swizzle sizes the persistent tile scheduler distinguishes (it rounds a larger one down
// to the largest of these the tile grid allows); 0 = its default, 1.
constexpr bool valid_swizzle(int swizzle) {
  return swizzle == 0 || swizzle == 1 || swizzle == 2 || swizzle == 4 || swizzle == 8;
}

// nullptr if a kernel that takes the scheduler knobs when `scheduler_knobs`, and a promotion
// interval in multiples of `promotion_step` wgmmas when promotion_step > 0, takes `knobs`.
constexpr Status check_knobs(const GemmKnobs& knobs, bool scheduler_knobs, int promotion_step) {
  if (!scheduler_knobs && (knobs.raster != 0 || knobs.swizzle != 0))
    return "GEMM knobs: this kernel has no persistent tile scheduler: raster and swizzle must be 0";
  if (knobs.raster != kRasterDefault && knobs.raster != kRasterAlongM && knobs.raster != kRasterAlongN)
    return "GEMM knobs: raster must be 0 (CUTLASS's heuristic), 1 (along M) or 2 (along N)";
  if (!valid_swizzle(knobs.swizzle)) return "GEMM knobs: swizzle must be 0 (the default, 1), 1, 2, 4 or 8";
  if (knobs.promotion != 0) {
    if (promotion_step == 0)
      return "GEMM knobs: promotion must be 0: this kernel does not promote FP8 partial sums "
             "(16-bit inputs or FastAccum)";
    if (knobs.promotion < 0 || knobs.promotion % promotion_step != 0)
      return "GEMM knobs: promotion must be 0 (the default, 4) or a positive multiple of the kernel's wgmmas per "
             "k-tile (TileK / 64: promotion_step in gemm_kernel_info)";
  }
  return nullptr;
}

// A registry entry for a kernel without knobs (SM80): can_implement and run reject non-zero
// knobs with check_knobs's reason before the kernel's own checks.
template <Status (*Check)(const SparseLinearArgs&)>
Status without_knobs(const SparseLinearArgs& args) {
  if (Status s = check_knobs(args.knobs, /*scheduler_knobs=*/false, /*promotion_step=*/0)) return s;
  return Check(args);
}

// `entry` (the registry entry of kernel class G) with G's can_implement and run behind
// without_knobs.
template <class G>
constexpr SparseGemmKernel knob_free(SparseGemmKernel entry) {
  entry.can_implement = &without_knobs<&G::can_implement>;
  entry.run = &without_knobs<&G::run>;
  return entry;
}

}  // namespace s_ste::gemm
