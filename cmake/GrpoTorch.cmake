# Finds LibTorch and defines the imported target grpo::torch (CPU libraries only).
#
# Why not plain find_package(Torch): the PyPI wheel is a CUDA build, and its TorchConfig.cmake
# insists on a CUDA toolkit (and nvToolsExt) even when we only want the CPU libraries. We read
# the same installation directly: headers, libtorch_cpu and libc10. Search order:
#   1. Torch_DIR / LIBTORCH_DIR / CMAKE_PREFIX_PATH (any LibTorch the user points at),
#   2. the virtual environment made by scripts/setup.sh (GRPO_VENV, ~/.local/share/grpo/venv),
#   3. a `torch` importable by python3.
# The version must match TORCH_VERSION (major.minor): CI and the GPU machine compile one API.

file(READ "${PROJECT_SOURCE_DIR}/TORCH_VERSION" GRPO_TORCH_PIN)
string(STRIP "${GRPO_TORCH_PIN}" GRPO_TORCH_PIN)

set(_grpo_torch_hints "")
foreach(_v Torch_DIR LIBTORCH_DIR)
  if(DEFINED ${_v})
    list(APPEND _grpo_torch_hints "${${_v}}")
  endif()
  if(DEFINED ENV{${_v}})
    list(APPEND _grpo_torch_hints "$ENV{${_v}}")
  endif()
endforeach()
foreach(_p ${CMAKE_PREFIX_PATH} $ENV{CMAKE_PREFIX_PATH})
  list(APPEND _grpo_torch_hints "${_p}" "${_p}/share/cmake/Torch")
endforeach()
if(DEFINED ENV{GRPO_VENV})
  set(_venv "$ENV{GRPO_VENV}")
else()
  set(_venv "$ENV{HOME}/.local/share/grpo/venv")
endif()
file(GLOB _venv_torch "${_venv}/lib/python3*/site-packages/torch/share/cmake/Torch")
list(APPEND _grpo_torch_hints ${_venv_torch})

find_file(GRPO_TORCH_CONFIG TorchConfig.cmake
  HINTS ${_grpo_torch_hints}
  PATH_SUFFIXES share/cmake/Torch
  NO_DEFAULT_PATH)
if(NOT GRPO_TORCH_CONFIG)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_FOUND)
    execute_process(
      COMMAND "${Python3_EXECUTABLE}" -c
        "import importlib.util,os;s=importlib.util.find_spec('torch');print(os.path.join(s.submodule_search_locations[0],'share','cmake','Torch') if s else '')"
      OUTPUT_VARIABLE _py_torch OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_py_torch AND EXISTS "${_py_torch}/TorchConfig.cmake")
      set(GRPO_TORCH_CONFIG "${_py_torch}/TorchConfig.cmake" CACHE FILEPATH "" FORCE)
    endif()
  endif()
endif()
if(NOT GRPO_TORCH_CONFIG)
  message(FATAL_ERROR
    "LibTorch not found. Run scripts/setup.sh (installs torch==${GRPO_TORCH_PIN} from PyPI into "
    "${_venv}), or point CMake at a LibTorch with -DTorch_DIR=<libtorch>/share/cmake/Torch.")
endif()

get_filename_component(GRPO_TORCH_ROOT "${GRPO_TORCH_CONFIG}" DIRECTORY)
get_filename_component(GRPO_TORCH_ROOT "${GRPO_TORCH_ROOT}/../../.." ABSOLUTE)

set(_ver_h "${GRPO_TORCH_ROOT}/include/torch/headeronly/version.h")
if(NOT EXISTS "${_ver_h}")
  set(_ver_h "${GRPO_TORCH_ROOT}/include/torch/csrc/api/include/torch/version.h")
endif()
file(STRINGS "${_ver_h}" _maj REGEX "#define TORCH_VERSION_MAJOR ")
file(STRINGS "${_ver_h}" _min REGEX "#define TORCH_VERSION_MINOR ")
file(STRINGS "${_ver_h}" _pat REGEX "#define TORCH_VERSION_PATCH ")
string(REGEX REPLACE ".* ([0-9]+).*" "\\1" _maj "${_maj}")
string(REGEX REPLACE ".* ([0-9]+).*" "\\1" _min "${_min}")
string(REGEX REPLACE ".* ([0-9]+).*" "\\1" _pat "${_pat}")
set(GRPO_TORCH_VERSION "${_maj}.${_min}.${_pat}")
string(REGEX MATCH "^[0-9]+\\.[0-9]+" _pin_mm "${GRPO_TORCH_PIN}")
if(NOT "${_maj}.${_min}" STREQUAL "${_pin_mm}")
  message(FATAL_ERROR "LibTorch at ${GRPO_TORCH_ROOT} is ${GRPO_TORCH_VERSION}; grpo is pinned to "
    "${GRPO_TORCH_PIN} (file TORCH_VERSION). Use that version or change the pin.")
endif()

find_library(GRPO_TORCH_CPU_LIB torch_cpu PATHS "${GRPO_TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)
find_library(GRPO_C10_LIB c10 PATHS "${GRPO_TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)
add_library(grpo_torch INTERFACE)
add_library(grpo::torch ALIAS grpo_torch)
# The wheel ships its own fmt (a newer major version) in include/fmt. grpo, spdlog and their
# libraries use the system fmt, so a shim directory that holds only `fmt` -> the system headers
# goes first on the include path; torch's compiled code keeps its own fmt namespace.
# (the system's, or one under CMAKE_PREFIX_PATH: Debian packages unpacked into a prefix, as
# bench/gpu.sh does on the GPU machine; never the LibTorch root's own fmt)
set(_fmt_paths "")
foreach(_p ${CMAKE_PREFIX_PATH})
  get_filename_component(_p "${_p}" ABSOLUTE)
  if(NOT _p STREQUAL GRPO_TORCH_ROOT)
    list(APPEND _fmt_paths "${_p}/include")
  endif()
endforeach()
find_path(GRPO_SYSTEM_FMT_INCLUDE fmt/format.h PATHS ${_fmt_paths} /usr/include /usr/local/include NO_DEFAULT_PATH)
set(_fmt_shim "${PROJECT_BINARY_DIR}/fmt_shim")
if(GRPO_SYSTEM_FMT_INCLUDE AND NOT EXISTS "${_fmt_shim}/fmt")
  file(MAKE_DIRECTORY "${_fmt_shim}")
  file(CREATE_LINK "${GRPO_SYSTEM_FMT_INCLUDE}/fmt" "${_fmt_shim}/fmt" SYMBOLIC)
endif()
target_include_directories(grpo_torch SYSTEM INTERFACE
  "${_fmt_shim}"
  "${GRPO_TORCH_ROOT}/include"
  "${GRPO_TORCH_ROOT}/include/torch/csrc/api/include")
target_link_libraries(grpo_torch INTERFACE "${GRPO_TORCH_CPU_LIB}" "${GRPO_C10_LIB}")
# LibTorch built with OpenMP (the wheel's ATen/Config.h: AT_PARALLEL_OPENMP 1) runs at::parallel_for
# through `#pragma omp parallel` in the header, i.e. in the caller's translation unit: without
# -fopenmp there, grpo's own at::parallel_for loops would silently run on one thread. Compile with
# OpenMP and link LibTorch's own libgomp (the wheel ships one) so the process has one OpenMP runtime.
file(STRINGS "${GRPO_TORCH_ROOT}/include/ATen/Config.h" _at_omp REGEX "#define AT_PARALLEL_OPENMP 1")
set(GRPO_TORCH_OPENMP_FLAGS "")
if(_at_omp)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  set(GRPO_TORCH_OPENMP_FLAGS "${OpenMP_CXX_FLAGS}")
  target_compile_options(grpo_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${OpenMP_CXX_FLAGS}>)
  if(EXISTS "${GRPO_TORCH_ROOT}/lib/libgomp.so.1")
    target_link_libraries(grpo_torch INTERFACE "${GRPO_TORCH_ROOT}/lib/libgomp.so.1")
  else()
    target_link_libraries(grpo_torch INTERFACE ${OpenMP_CXX_LIBRARIES})
  endif()
endif()
# Wheels since 2.7 use the new libstdc++ ABI only; say so explicitly so every target agrees.
target_compile_definitions(grpo_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
set(GRPO_TORCH_LIBDIR "${GRPO_TORCH_ROOT}/lib")
message(STATUS "grpo: LibTorch ${GRPO_TORCH_VERSION} at ${GRPO_TORCH_ROOT}")

# A CUDA LibTorch (the GPU machine's, or a full CUDA wheel): link libtorch_cuda too, so GPU tensors
# and ops exist in grpo's programs, but only when every library it needs resolves (the wheel that
# scripts/setup.sh installs comes without cuBLAS, cuDNN, NCCL...; it then stays a CPU build).
# --no-as-needed: nothing references libtorch_cuda directly; loading it registers the CUDA backend.
set(GRPO_TORCH_CUDA_LINK "AUTO" CACHE STRING "Link libtorch_cuda: AUTO (when its libraries resolve), ON, OFF")
set(GRPO_TORCH_CUDA OFF)
find_library(GRPO_TORCH_CUDA_LIB torch_cuda PATHS "${GRPO_TORCH_ROOT}/lib" NO_DEFAULT_PATH)
if(GRPO_TORCH_CUDA_LINK STREQUAL "ON" AND NOT GRPO_TORCH_CUDA_LIB)
  message(FATAL_ERROR "GRPO_TORCH_CUDA_LINK=ON but ${GRPO_TORCH_ROOT}/lib has no libtorch_cuda (a CPU LibTorch)")
endif()
if(GRPO_TORCH_CUDA_LIB AND NOT GRPO_CUDA STREQUAL "OFF" AND NOT GRPO_TORCH_CUDA_LINK STREQUAL "OFF")
  set(_resolves ON)
  if(NOT GRPO_TORCH_CUDA_LINK STREQUAL "ON")
    execute_process(COMMAND ldd "${GRPO_TORCH_CUDA_LIB}" OUTPUT_VARIABLE _ldd ERROR_QUIET RESULT_VARIABLE _ldd_rc)
    if(NOT _ldd_rc EQUAL 0 OR _ldd MATCHES "not found")
      set(_resolves OFF)
    endif()
  endif()
  if(_resolves)
    set(GRPO_TORCH_CUDA ON)
    target_link_libraries(grpo_torch INTERFACE "-Wl,--no-as-needed,${GRPO_TORCH_CUDA_LIB}")
  endif()
endif()
