// s_ste_cuda's introspection of the CUTLASS sparse GEMMs (gemm_py.cpp), in CUDA builds only:
// module.cpp adds these methods to the module.
#pragma once
#include <Python.h>

namespace s_ste::cuda {
extern PyMethodDef gemm_py_methods[];  // null-terminated
}  // namespace s_ste::cuda
