// The Python entry of the shared argument checks (s_ste_cuda.check_args), for the fake kernels.
#pragma once
#include <Python.h>

namespace s_ste {
PyObject* check_args(PyObject* self, PyObject* args);
PyObject* check_same_device_py(PyObject* self, PyObject* args);
}  // namespace s_ste
