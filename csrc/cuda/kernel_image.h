// require_kernel_image(op): raise a clear error, once per device, when this build has no
// kernel image for the current GPU (kernel_image.cu).
#pragma once

namespace s_ste::cuda {
void require_kernel_image(const char* op);
}  // namespace s_ste::cuda
