// CPU kernel of mvue_24: one Philox draw and one MVUE sample per group.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../plans.h"
#include "s_ste/mvue.cuh"

namespace s_ste {
namespace {

at::Tensor mvue_24_cpu(const at::Tensor& g_in, int64_t seed, int64_t offset) {
  MvuePlan p = plan_mvue(g_in, seed, offset);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.g.scalar_type(), "mvue_24_cpu", [&] {
    const scalar_t* g = p.g.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    at::parallel_for(0, p.groups, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t grp = begin; grp < end; ++grp) {
        float v[4], r[4];
        for (int i = 0; i < 4; ++i) v[i] = static_cast<float>(g[4 * grp + i]);
        mvue_group(v, group_random(p.seed, p.offset, uint64_t(grp)), r);
        for (int i = 0; i < 4; ++i) out[4 * grp + i] = to_value<scalar_t>(r[i]);
      }
    });
  });
  return p.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(s_ste, CPU, m) { m.impl("mvue_24", &mvue_24_cpu); }

}  // namespace s_ste
