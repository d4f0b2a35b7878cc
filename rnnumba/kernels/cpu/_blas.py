"""GEMM on strided row-major matrices from inside Numba kernels.

Numba's ``np.dot`` copies any operand that is not contiguous and only writes its result;
the weight gradients read the gate columns of the cache (rows strided) and add into the
gradients. :func:`gemm` calls the same BLAS as ``np.dot`` (SciPy's, through Numba's
``numba_xxgemm`` wrapper, resolved by name so that kernels using it stay cacheable) with
each matrix's own row stride as its leading dimension and a ``beta``, so nothing is copied
and the product accumulates in place. Called from a kernel, it releases the GIL with it,
and a ``prange`` can hand its products to Numba's threads.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.linalg import check_blas_return, ensure_blas, get_blas_kind

from ._jit import kernel

_CHAR = ir.IntType(8)
_VOID_P = ir.IntType(8).as_pointer()
_NO_TRANSPOSE, _TRANSPOSE = ord("n"), ord("t")


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """BLAS ``?gemm`` in column-major terms: ``C = alpha op(A) op(B) + beta C`` for the data
    of arrays ``a``, ``b``, ``c`` (``m x n`` result, ``k`` inner), leading dimensions given."""
    ensure_blas()
    dtype = c.dtype
    kind = ord(get_blas_kind(dtype, "gemm"))

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [_CHAR, _CHAR, _CHAR, intp, intp, intp,
                                                _VOID_P, _VOID_P, intp, _VOID_P, intp,
                                                _VOID_P, _VOID_P, intp])
        function = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        ta, tb, mv, nv, kv, alpha_v, a_v, lda_v, b_v, ldb_v, beta_v, c_v, ldc_v = args
        arg_types = signature.args

        def data(index, value):
            array = context.make_array(arg_types[index])(context, builder, value)
            return builder.bitcast(array.data, _VOID_P)

        def scalar(index, value):
            cast = context.cast(builder, value, arg_types[index], dtype)
            return builder.bitcast(cgutils.alloca_once_value(builder, cast), _VOID_P)

        def integer(index, value):
            return context.cast(builder, value, arg_types[index], types.intp)

        status = builder.call(function, (
            ir.Constant(_CHAR, kind), builder.trunc(ta, _CHAR), builder.trunc(tb, _CHAR),
            integer(2, mv), integer(3, nv), integer(4, kv), scalar(5, alpha_v), data(6, a_v),
            integer(7, lda_v), data(8, b_v), integer(9, ldb_v), scalar(10, beta_v),
            data(11, c_v), integer(12, ldc_v)))
        check_blas_return(context, builder, status)
        return context.get_dummy_value()

    return types.none(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), codegen


@kernel
def _leading(matrix):
    """The leading dimension BLAS gets for a row-major matrix: its row stride in elements
    (any value of at least its width when it has a single row)."""
    rows, cols = matrix.shape
    if rows <= 1:
        return max(cols, 1)
    return matrix.strides[0] // matrix.itemsize


def gemm(a, transpose_a, b, transpose_b, beta, c):
    """``c = op(a) @ op(b) + beta * c`` for 2-D row-major arrays of one dtype whose elements
    are contiguous within each row (any row stride), ``op`` transposing where asked.

    Compiled inside kernels (:func:`_gemm_overload`); this NumPy body runs where Numba's JIT
    is disabled. The caller checks the shapes and the unit column stride (BLAS is told the
    shape of the product only); nothing is called for an empty result, and an empty inner
    dimension leaves ``c`` scaled by ``beta`` as BLAS would.
    """
    product = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    c[...] = product if beta == 0.0 else beta * c + product


@overload(gemm, jit_options={"nogil": True})
def _gemm_overload(a, transpose_a, b, transpose_b, beta, c):
    def impl(a, transpose_a, b, transpose_b, beta, c):
        m, n = c.shape
        k = a.shape[0] if transpose_a else a.shape[1]
        if m == 0 or n == 0:
            return
        if k == 0:
            for i in range(m):
                for j in range(n):
                    c[i, j] = beta * c[i, j]
            return
        # row-major C = A B is column-major C^T = B^T A^T: the operands swap
        _xxgemm(_TRANSPOSE if transpose_b else _NO_TRANSPOSE,
                _TRANSPOSE if transpose_a else _NO_TRANSPOSE,
                n, m, k, 1.0, b, _leading(b), a, _leading(a), beta, c, _leading(c))
    return impl
