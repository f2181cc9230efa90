// device_name (sparse_gemm.h): the only CUDA runtime call of the kernel selection, in a file of
// its own so that host-only tests of select.cpp can supply a made-up GPU name instead.
#include <cuda_runtime_api.h>

#include <mutex>
#include <string>

#include "sparse_gemm.h"

namespace s_ste::gemm {

namespace {
constexpr int kCachedDevices = 64;
std::mutex g_mutex;
std::string g_names[kCachedDevices];  // guarded by g_mutex; "" = not read yet (or unreadable)
}  // namespace

const char* device_name(int device) {
  if (device < 0 || device >= kCachedDevices) return "";
  const std::lock_guard<std::mutex> lock(g_mutex);
  std::string& name = g_names[device];
  if (name.empty()) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: leave no error for the next launch check
      return "";                 // not cached: the next call asks again
    }
    name = prop.name;
  }
  return name.c_str();
}

}  // namespace s_ste::gemm
