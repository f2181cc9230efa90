// The Python entries of the argument checks (op_checks_py.cpp), for the fake kernels and the
// layer's own custom ops; module.cpp lists them in s_ste_cuda's method table.
#pragma once
#include <Python.h>

namespace s_ste {
PyObject* check_args(PyObject* self, PyObject* args);
PyObject* check_same_device_py(PyObject* self, PyObject* args);
}  // namespace s_ste
