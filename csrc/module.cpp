// The Python module s_ste_cuda: importing it loads the op registrations (schemas.cpp and the
// kernel files); its methods serve s_ste/ops.py (the checks and layout rules for the fake
// kernels) and the tests and benches (GEMM introspection, CUDA builds only).
#include <Python.h>

#include <cstring>
#include <utility>
#include <vector>

#include "layout_rules.h"
#include "op_checks_py.h"
#include "s_ste/layout_sm90.cuh"

#ifdef S_STE_WITH_CUDA
#include "cuda/gemm_py.h"
#include "cuda/gemm_tuning_py.h"
#endif

namespace {
// sm90_meta_bytes(rows, K, elem_bits): size of the SM90 metadata buffer, for the fake
// kernels (one formula, in layout_sm90.cuh).
PyObject* sm90_meta_bytes(PyObject*, PyObject* args) {
  long long rows, K;
  int bits;
  if (!PyArg_ParseTuple(args, "LLi", &rows, &K, &bits)) return nullptr;
  return PyLong_FromLongLong(s_ste::sm90::meta_bytes(rows, K, bits));
}

// layout_rules(): {layout: {rule: value}}, the table of layout_rules.cpp; per-width rules
// are {value bits: alignment} for the widths the layout holds.
PyObject* layout_rules(PyObject*, PyObject*) {
  PyObject* table = PyDict_New();
  auto set = [](PyObject* d, const char* key, PyObject* v) {
    PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
  };
  auto per_bits = [](int align16, int align8) {
    PyObject* d = PyDict_New();
    for (auto [bits, align] : {std::pair{16, align16}, std::pair{8, align8}}) {
      if (align == 0) continue;
      PyObject *k = PyLong_FromLong(bits), *v = PyLong_FromLong(align);
      PyDict_SetItem(d, k, v);
      Py_DECREF(k);
      Py_DECREF(v);
    }
    return d;
  };
  for (const s_ste::LayoutRules& r : s_ste::all_layout_rules()) {
    PyObject* row = PyDict_New();
    set(row, "row_align", PyLong_FromLong(r.row_align));
    set(row, "k_align", per_bits(r.k_align16, r.k_align8));
    set(row, "gemm_row_align", PyLong_FromLong(r.gemm_row_align));
    set(row, "gemm_k_align", per_bits(r.gemm_k_align16, r.gemm_k_align8));
    set(row, "gemm_token_align", PyLong_FromLong(r.gemm_token_align));
    set(row, "wgrad_token_pad", PyLong_FromLong(r.wgrad_token_pad));
    set(row, "meta_dtype", PyUnicode_FromString(r.meta_dtype == c10::kShort ? "int16" : "uint8"));
    set(row, "meta_cols", PyLong_FromLong(r.meta_cols));
    set(row, "meta_2d", PyBool_FromLong(r.meta_2d));
    set(table, r.name, row);
  }
  return table;
}

// meta_shape(layout, rows, K, elem_bits): the shape of the metadata the kernels allocate
// for a compressed [rows, K] operand, for the fake kernels.
PyObject* meta_shape(PyObject*, PyObject* args) {
  const char* layout;
  long long rows, K;
  int bits;
  if (!PyArg_ParseTuple(args, "sLLi", &layout, &rows, &K, &bits)) return nullptr;
  if (std::strcmp(layout, "sm80") != 0 && std::strcmp(layout, "sm90") != 0) {
    PyErr_Format(PyExc_ValueError, "meta_shape: layout must be \"sm80\" or \"sm90\", got \"%s\"", layout);
    return nullptr;
  }
  const auto lay = std::strcmp(layout, "sm80") == 0 ? s_ste::Layout::kSm80 : s_ste::Layout::kSm90;
  const auto shape = s_ste::meta_shape(lay, rows, K, bits == 8 ? c10::kByte : c10::kHalf);
  PyObject* out = PyTuple_New(Py_ssize_t(shape.size()));
  for (size_t i = 0; i < shape.size(); ++i) PyTuple_SET_ITEM(out, Py_ssize_t(i), PyLong_FromLongLong(shape[i]));
  return out;
}

PyObject* built_with_cuda(PyObject*, PyObject*) {
#ifdef S_STE_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"check_args", s_ste::check_args, METH_VARARGS,
     "check_args(op, *specs): the real kernels' argument checks, for the fake kernels"},
    {"check_same_device", s_ste::check_same_device_py, METH_VARARGS,
     "check_same_device(op, name, device, ref_name, ref_device): the checks' error when the devices differ"},
    {"layout_rules", layout_rules, METH_NOARGS, "the alignment rules of the layouts and their GEMMs"},
    {"meta_shape", meta_shape, METH_VARARGS, "shape of the metadata for (layout, rows, K, elem_bits)"},
    {"sm90_meta_bytes", sm90_meta_bytes, METH_VARARGS, "bytes of SM90 metadata for (rows, K, elem_bits)"},
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "whether the CUDA kernels were compiled in"},
    {nullptr, nullptr, 0, nullptr}};

// methods, and gemm_py's and gemm_tuning_py's in a CUDA build: the table the module is created with.
PyMethodDef* method_table() {
  static std::vector<PyMethodDef> table = [] {
    std::vector<PyMethodDef> t;
#ifdef S_STE_WITH_CUDA
    for (const PyMethodDef* m = s_ste::cuda::gemm_py_methods; m->ml_name; ++m) t.push_back(*m);
    for (const PyMethodDef* m = s_ste::gemm_tuning_methods(); m->ml_name; ++m) t.push_back(*m);
#endif
    for (const PyMethodDef& m : methods) t.push_back(m);  // ends with the sentinel
    return t;
  }();
  return table.data();
}

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "s_ste_cuda",
                          "s-ste kernels; the ops live under torch.ops.s_ste", -1, nullptr};
}  // namespace

PyMODINIT_FUNC PyInit_s_ste_cuda(void) {
  module_def.m_methods = method_table();
  return PyModule_Create(&module_def);
}
