// s_ste_cuda.gemm_kernels / gemm_select / gemm_can_implement / last_sparse_linear_kernel: the
// GEMM registry and selection of csrc/gemm/ seen from Python, host-only (no GPU needed). The
// arguments speak the GEMM's names (sparse_gemm.h): N = tokens, M = out_features.
#include "gemm_py.h"

#include <cstring>
#include <string>

#include "../gemm/sparse_gemm.h"

namespace s_ste::cuda {
namespace {
const char* element_name(s_ste::gemm::Element e) {
  switch (e) {
    case s_ste::gemm::Element::kBF16: return "bfloat16";
    case s_ste::gemm::Element::kF16: return "float16";
    case s_ste::gemm::Element::kE4M3: return "float8_e4m3fn";
    case s_ste::gemm::Element::kE5M2: return "float8_e5m2";
  }
  return "?";
}

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
                                  element_name(k->a), element_name(k->b), element_name(k->out),
                                  k->has_bias ? Py_True : Py_False, k->out_is_transposed ? Py_True : Py_False,
                                  k->tile_m, k->tile_n, k->tile_k));
  }
  return list;
}

// Host-only arguments for a problem (no GPU needed): dummy pointers with the alignment real
// tensors have.
s_ste::gemm::SparseLinearArgs dummy_args(long long N, long long M, long long K, bool bias) {
  s_ste::gemm::SparseLinearArgs a{};
  a.N = N, a.M = M, a.K = K;
  a.x = reinterpret_cast<const void*>(0x10000);
  a.values = reinterpret_cast<const void*>(0x20000);
  a.meta = reinterpret_cast<const void*>(0x30000);
  a.bias = bias ? reinterpret_cast<const void*>(0x40000) : nullptr;
  a.out = reinterpret_cast<void*>(0x50000);
  return a;
}

bool parse_element(const char* name, s_ste::gemm::Element* out) {
  for (auto e : {s_ste::gemm::Element::kBF16, s_ste::gemm::Element::kF16, s_ste::gemm::Element::kE4M3,
                 s_ste::gemm::Element::kE5M2}) {
    if (std::strcmp(name, element_name(e)) == 0) {
      *out = e;
      return true;
    }
  }
  PyErr_Format(PyExc_ValueError, "gemm_select: unknown dtype '%s' (bfloat16, float16, float8_e4m3fn, float8_e5m2)",
               name);
  return false;
}

// gemm_select(layout, values_dtype, sm_major, N, M, K, bias[, x_dtype[, sm_count]]) ->
// (kernel name or None, reasons): what sparse_linear would run on a GPU of that compute
// capability and SM count (default 132, an H100 SXM). x_dtype defaults to values_dtype
// (float8_e4m3fn for FP8 values).
PyObject* gemm_select(PyObject*, PyObject* args) {
  const char *layout, *a_name, *b_name = nullptr;
  int sm_major, bias, sm_count = 132;
  long long N, M, K;
  if (!PyArg_ParseTuple(args, "ssiLLLp|zi", &layout, &a_name, &sm_major, &N, &M, &K, &bias, &b_name, &sm_count))
    return nullptr;
  s_ste::gemm::Element a, b;
  if (!parse_element(a_name, &a)) return nullptr;
  if (b_name == nullptr) b = a == s_ste::gemm::Element::kE5M2 ? s_ste::gemm::Element::kE4M3 : a;
  else if (!parse_element(b_name, &b)) return nullptr;
  std::string why;
  const auto* k = s_ste::gemm::select_kernel(dummy_args(N, M, K, bias), std::strcmp(layout, "sm90") == 0, a, b,
                                             sm_major, sm_count, &why);
  if (k) return Py_BuildValue("(ss)", k->name, "");
  return Py_BuildValue("(Os)", Py_None, why.c_str());
}

// gemm_can_implement(name, N, M, K, bias): None if that kernel takes the problem, else why.
PyObject* gemm_can_implement(PyObject*, PyObject* args) {
  const char* name;
  long long N, M, K;
  int bias;
  if (!PyArg_ParseTuple(args, "sLLLp", &name, &N, &M, &K, &bias)) return nullptr;
  int count = 0;
  const s_ste::gemm::SparseGemmKernel* const* all = s_ste::gemm::kernels(&count);
  for (int i = 0; i < count; ++i) {
    if (std::strcmp(all[i]->name, name) != 0) continue;
    const s_ste::gemm::Status s = all[i]->can_implement(dummy_args(N, M, K, bias));
    if (s == nullptr) Py_RETURN_NONE;
    return PyUnicode_FromString(s);
  }
  PyErr_Format(PyExc_KeyError, "no GEMM kernel named %s", name);
  return nullptr;
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
    {"gemm_can_implement", gemm_can_implement, METH_VARARGS, "None if a GEMM takes (N, M, K, bias), else why"},
    {"gemm_select", gemm_select, METH_VARARGS, "the kernel sparse_linear picks for a problem, or (None, why)"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace s_ste::cuda
