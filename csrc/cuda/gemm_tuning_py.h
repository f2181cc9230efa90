// The Python entries of the GEMM selection and tuning (s_ste_cuda.gemm_select, gemm_can_implement,
// gemm_kernel_info, gemm_fingerprint, gemm_install_tables, gemm_tables, gemm_run): see
// gemm_tuning_py.cpp. The module adds them with PyModule_AddFunctions(module, gemm_tuning_methods()).
#pragma once
#include <Python.h>

namespace s_ste {
// A null-terminated PyMethodDef array with static storage.
PyMethodDef* gemm_tuning_methods();
}  // namespace s_ste
