# The one CMake check of CUDA architecture lists, included by CMakeLists.txt and
# csrc/gemm/CMakeLists.txt. The rules and the defaults live in tools/build_config.py (setup.py
# uses the same file): a Hopper build as plain sm_90, or PTX below sm_90a that Hopper would JIT
# into SM90 GEMMs that compute nothing, is refused at configure time.
#
# After include(): S_STE_DEFAULT_CUDA_ARCHITECTURES (the CMake spelling of the default list),
# S_STE_DEFAULT_TORCH_CUDA_ARCH_LIST (the same in TORCH_CUDA_ARCH_LIST spelling),
# S_STE_GEMM_CXX11_ABI (the GEMM archive's libstdc++ ABI), and
#   s_ste_check_cuda_architectures(<variable>)   FATAL_ERROR unless the CMake list in <variable> is allowed
#   s_ste_check_torch_arch_list(<value>)         the same for a TORCH_CUDA_ARCH_LIST value
include_guard(GLOBAL)

if(NOT Python3_EXECUTABLE)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
endif()
set(_S_STE_BUILD_CONFIG "${CMAKE_CURRENT_LIST_DIR}/../tools/build_config.py")
execute_process(
  COMMAND ${Python3_EXECUTABLE} ${_S_STE_BUILD_CONFIG} --cmake
  OUTPUT_VARIABLE _s_ste_arch_settings COMMAND_ERROR_IS_FATAL ANY)
set(_s_ste_arch_settings_file "${CMAKE_CURRENT_BINARY_DIR}/s_ste_arch_settings.cmake")
file(WRITE "${_s_ste_arch_settings_file}" "${_s_ste_arch_settings}")
include("${_s_ste_arch_settings_file}")

# Named parameters keep a quoted list whole (ARGN would split it at its semicolons).
function(_s_ste_arch_check flag value name)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} ${_S_STE_BUILD_CONFIG} ${flag} "${value}" --name ${name}
    RESULT_VARIABLE _rc ERROR_VARIABLE _why ERROR_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "${_why}")
  endif()
endfunction()

function(s_ste_check_cuda_architectures variable)
  _s_ste_arch_check(--check-cmake "${${variable}}" ${variable})
endfunction()

function(s_ste_check_torch_arch_list value)
  _s_ste_arch_check(--check-torch "${value}" TORCH_CUDA_ARCH_LIST)
endfunction()
