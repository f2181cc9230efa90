// s_ste_cuda.gemm_kernels / last_sparse_linear_kernel: the GEMM registry of csrc/gemm/ seen from
// Python, host-only (no GPU needed). The selection and tuning entries (gemm_select,
// gemm_can_implement, the tables, gemm_run) are gemm_tuning_py.cpp's.
#include "gemm_py.h"

#include "../gemm/sparse_gemm.h"

namespace s_ste::cuda {
namespace {
// gemm_kernels(): the CUTLASS sparse GEMMs compiled in, as tuples
// (name, sm, layout, a, b, out, has_bias, out_is_transposed, tile_m, tile_n, tile_k).
PyObject* gemm_kernels(PyObject*, PyObject*) {
  int count = 0;
  const s_ste::gemm::SparseGemmKernel* const* all = s_ste::gemm::kernels(&count);
  PyObject* list = PyList_New(count);
  for (int i = 0; i < count; ++i) {
    const auto* k = all[i];
    PyList_SET_ITEM(list, i,
                    Py_BuildValue("(sissssOOiii)", k->name, k->sm, k->sm90_layout ? "sm90" : "sm80",
                                  s_ste::gemm::element_name(k->a), s_ste::gemm::element_name(k->b),
                                  s_ste::gemm::element_name(k->out),
                                  k->has_bias ? Py_True : Py_False, k->out_is_transposed ? Py_True : Py_False,
                                  k->tile_m, k->tile_n, k->tile_k));
  }
  return list;
}

PyObject* last_sparse_linear_kernel(PyObject*, PyObject*) {
  const char* name = s_ste::gemm::last_kernel();
  if (name == nullptr) Py_RETURN_NONE;
  return PyUnicode_FromString(name);
}
}  // namespace

PyMethodDef gemm_py_methods[] = {
    {"last_sparse_linear_kernel", last_sparse_linear_kernel, METH_NOARGS,
     "the GEMM the latest CUDA sparse_linear ran ('fallback': decompress + dense), or None"},
    {"gemm_kernels", gemm_kernels, METH_NOARGS, "the CUTLASS sparse GEMMs compiled in"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace s_ste::cuda
