"""One ``prange`` kernel that runs any cell's row kernel over row blocks.

The row kernel is called through its compiled address, not by name: a call by name makes
Numba link the row kernel's whole code into the parallel function and optimise it again,
3-5 s per block kernel with an empty cache (``docs/design.md``, "Compile time"). Through
the address the block kernel stays small, takes no row kernel as an argument (which would
miss Numba's on-disk cache) and is shared by every cell and direction.
"""

from numba import njit, prange, types
from numba._dispatcher import compute_fingerprint
from numba.core import cgutils
from numba.extending import intrinsic

from ..._config import JIT_OPTIONS

# (row kernel, fingerprint of its arguments) -> address. No lock: two threads that miss
# at once both ask Numba, whose compiler lock makes the second find the first's kernel.
_addresses = {}


def row_kernel_address(row_kernel, args):
    """Address of ``row_kernel``'s native code for ``(*args, start, stop)`` with int64 row
    bounds, compiled (or loaded from the cache) on first use."""
    key = (row_kernel, compute_fingerprint(args))
    address = _addresses.get(key)
    if address is None:
        signature = tuple(row_kernel.typeof_pyval(a) for a in args) + (types.int64,) * 2
        result = row_kernel.overloads.get(signature)
        if result is None:
            row_kernel.compile(signature)
            result = row_kernel.overloads[signature]
        address = result.library.get_pointer_to_function(result.fndesc.llvm_func_name)
        _addresses[key] = address
    return address


@intrinsic
def _call_rows(typingctx, address, args, start, stop):
    """``row_kernel(*args, start, stop)`` for the row kernel compiled at ``address`` with
    exactly these argument types: the call Numba itself makes for a call by name, error
    status included."""
    arg_types = tuple(args) + (start, stop)

    def codegen(context, builder, signature, values):
        address_value, args_value, start_value, stop_value = values
        call_args = [builder.extract_value(args_value, k) for k in range(len(args))]
        call_args += [start_value, stop_value]
        function_type = context.call_conv.get_function_type(types.none, arg_types)
        function = builder.inttoptr(address_value, function_type.as_pointer())
        status, _ = context.call_conv.call_function(builder, function, types.none, arg_types,
                                                    call_args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.none(address, args, start, stop), codegen


@njit(parallel=True, **JIT_OPTIONS)
def run_row_blocks(address, starts, stops, args):
    """The row kernel at ``address`` (:func:`row_kernel_address`) over the row blocks
    ``starts[b]:stops[b]``, one per thread of Numba's threading layer."""
    for b in prange(starts.shape[0]):
        _call_rows(address, args, starts[b], stops[b])
