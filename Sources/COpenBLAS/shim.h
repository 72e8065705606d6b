// Why this header exists: a systemLibrary module needs one header naming what it exports. Debian's
// OpenBLAS cblas.h (pkg-config `openblas`, .../openblas-pthread/) declares cblas_sgemm and the
// OpenBLAS extensions the node uses: openblas_set_num_threads, openblas_get_num_threads and
// openblas_get_corename (the kernel family chosen when the library was loaded: see BLAS.swift for
// why OPENBLAS_CORETYPE must be set before the process starts, not at run time).
#ifndef SECURENODE_COPENBLAS_SHIM_H
#define SECURENODE_COPENBLAS_SHIM_H

#include <cblas.h>

#endif
