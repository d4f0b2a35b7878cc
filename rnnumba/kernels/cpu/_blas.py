"""GEMM on strided row-major matrices from inside Numba kernels.

Numba's ``np.dot`` copies any operand that is not contiguous and only writes its result;
the weight gradients read the gate columns of the cache (rows strided) and add into the
gradients. :func:`gemm` calls the same BLAS as ``np.dot`` (SciPy's, through Numba's
``numba_xxgemm`` wrapper, resolved by name so that kernels using it stay cacheable) with
each matrix's row stride as its leading dimension and a ``beta``, so nothing is copied
and the product accumulates in place. Called from a kernel, it releases the GIL with it,
and a ``prange`` can hand its products to Numba's threads.

:func:`gemm` takes addresses and integers only, so it compiles once, as does a kernel that
calls it with numbers: a kernel taking a dozen array views of assorted layouts and
calling BLAS on them took about 2 s to compile.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import check_blas_return, ensure_blas

from ._jit import kernel

_CHAR = ir.IntType(8)
_VOID_P = ir.IntType(8).as_pointer()
_NO_TRANSPOSE, _TRANSPOSE = ord("n"), ord("t")
_KINDS = {types.float32: ord("s"), types.float64: ord("d")}


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """BLAS ``?gemm`` in column-major terms: ``C = alpha op(A) op(B) + beta C`` for the data
    at addresses ``a``, ``b``, ``c`` (``m x n`` result, ``k`` inner), leading dimensions
    given; ``alpha`` and ``beta`` have the matrices' dtype."""
    ensure_blas()
    dtype = alpha

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [_CHAR, _CHAR, _CHAR, intp, intp, intp,
                                                _VOID_P, _VOID_P, intp, _VOID_P, intp,
                                                _VOID_P, _VOID_P, intp])
        function = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        ta, tb, mv, nv, kv, alpha_v, a_v, lda_v, b_v, ldb_v, beta_v, c_v, ldc_v = args
        arg_types = signature.args

        def integer(index, value):
            return context.cast(builder, value, arg_types[index], types.intp)

        def pointer(index, value):
            return builder.inttoptr(integer(index, value), _VOID_P)

        def scalar(value):
            return builder.bitcast(cgutils.alloca_once_value(builder, value), _VOID_P)

        status = builder.call(function, (
            ir.Constant(_CHAR, _KINDS[dtype]), builder.trunc(ta, _CHAR),
            builder.trunc(tb, _CHAR), integer(2, mv), integer(3, nv), integer(4, kv),
            scalar(alpha_v), pointer(6, a_v), integer(7, lda_v), pointer(8, b_v),
            integer(9, ldb_v), scalar(beta_v), pointer(11, c_v), integer(12, ldc_v)))
        check_blas_return(context, builder, status)
        return context.get_dummy_value()

    return types.none(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), codegen


@kernel
def gemm(double, transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """``C = op(A) @ op(B) + beta * C`` for row-major matrices at addresses ``a``, ``b``,
    ``c`` (``C`` is ``m x n``, the inner dimension ``k``), float64 where ``double`` else
    float32, each with its leading dimension (row stride in elements, at least the
    matrix's width and 1). Compiled once: a kernel calls it with the addresses and strides
    of views it takes (``view.ctypes.data``), and the caller keeps those arrays alive. An
    empty result returns at once; an empty inner dimension scales ``C`` by ``beta``."""
    # row-major C = A B is column-major C^T = B^T A^T: the operands swap
    trans_a = _TRANSPOSE if transpose_a else _NO_TRANSPOSE
    trans_b = _TRANSPOSE if transpose_b else _NO_TRANSPOSE
    if double:
        _xxgemm(trans_b, trans_a, n, m, k, np.float64(1.0), b, ldb, a, lda, np.float64(beta),
                c, ldc)
    else:
        _xxgemm(trans_b, trans_a, n, m, k, np.float32(1.0), b, ldb, a, lda, np.float32(beta),
                c, ldc)
