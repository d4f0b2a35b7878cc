"""Numeric kernels: one module per cell per backend, with the same names and signatures.

Every cell module (``cpu/rnn.py``, ``cpu/lstm.py``, ``cpu/gru.py`` and their ``cuda/``
twins) exposes the same three functions, and each backend has a ``common`` module with the
two GEMM phases shared by all cells. The layer above (:class:`rnnumba.Recurrent`) runs one
layer and direction at a time as four phases::

    project_input(x, w_ih, b_ih, proj)                       # common: proj = x @ w_ih.T + b_ih
    forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act,
                     out, col, cache, h_n, c_n)               # cell: the recurrence
    backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache,
                      grad_out, grad_h_n, grad_c_n,
                      d_ih, d_hh, grad_h0, grad_c0)           # cell: BPTT, per-step part
    weight_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh, w_ih,
                     grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh,
                     grad_x)                                   # common: GEMMs after the loop

Conventions (arrays C-contiguous unless said otherwise, one float dtype per call, ``G``
gates per cell):

- Time-major storage: ``x`` is ``(T, N, I)``, ``proj`` and ``d_ih``/``d_hh`` are
  ``(T, N, G*H)``, ``out`` and ``grad_out`` are ``(T, N, D*H)`` and this direction owns the
  columns ``col:col+H``. On the CPU, ``grad_out`` and ``grad_x`` may also be the time-major
  views (``a.transpose(1, 0, 2)``) of C-contiguous batch-major ``(N, T, ...)`` arrays, so
  that the caller's output gradient and the input gradient it gets back are not copied;
  so may ``x``, the caller's input: ``project_input`` copies it into time-major order a
  chunk of steps at a time (``common.stage_steps``), ``weight_gradients`` the steps it is
  given (one chunk for the RNN, the whole sequence for the LSTM and GRU, for the length of
  the call).
  Weights are in PyTorch's layout: ``w_ih`` ``(G*H, I)``, ``w_hh`` ``(G*H, H)``, biases
  ``(G*H,)``, gate order as PyTorch (LSTM i,f,g,o; GRU r,z,n).
- ``lengths`` is ``int64 (N,)`` with values in ``0..T`` (validated by the caller; 0 is allowed
  internally, e.g. for truncated BPTT chunks). Step ``t`` of row ``n`` is active iff
  ``t < lengths[n]``. Inactive steps leave the state unchanged and write zeros to ``out``, so
  the forward direction ends at each row's own last step and the reverse direction
  (``reverse=True``, ``t`` from ``T-1`` down to 0) starts there.
- ``act`` selects the vanilla RNN nonlinearity (0 tanh, 1 relu); other cells ignore it.
- ``c0``, ``c_n``, ``grad_c_n``, ``grad_c0`` are ``(N, H)`` for the LSTM; other cells take
  ``(0, 0)`` placeholder arrays and ignore them.
- ``cache`` ``(T, N, K)`` keeps what BPTT needs beyond ``out``: RNN ``K=0`` (the output is the
  state), LSTM ``K=5H`` (i, f, g, o after activation, then c), GRU ``K=4H`` (r, z, n after
  activation, then ``W_hn h + b_hn``). ``cache_width(H)`` in each cell module says ``K``.
- ``b_hh`` is added in the recurrence (not folded into ``proj``) because the GRU needs
  ``b_hn`` inside the reset product.
- Backward writes the pre-activation gradients: ``d_ih`` is what multiplies the input
  projection, ``d_hh`` what multiplies the recurrent one. They are equal except for the GRU's
  n gate, so RNN and LSTM callers may pass the same array twice. Inactive steps get zeros.
  ``grad_h0``/``grad_c0`` receive the gradient at the initial state.
- For the LSTM and GRU, ``proj`` may be the gate columns of ``cache`` itself
  (``cache[:, :, :G*H]``): ``project_input`` writes through the strided view and
  ``forward_sequence`` reads each step's projection before writing the gates over it. On
  the CPU, the RNN's ``proj`` may likewise be this direction's columns of ``out``
  (``out[:, :, col:col+H]``), read at each step before the output is written over them.
- For the LSTM and GRU, ``d_ih`` may be the gate columns of ``cache`` itself
  (``cache[:, :, :G*H]``, a strided view; for the LSTM then also ``d_hh``; for the GRU
  ``d_hh`` must then be ``cache[:, :, 3*H:]``, the n gate's recurrent gradient written over
  ``W_hn h + b_hn``, its r and z columns being ``d_ih``'s): each step's cache entries are
  read before its gradients are written over them and no later step reads them (the LSTM's
  ``c`` columns stay), so BPTT needs no gradient buffer of its own. The cache is spent
  afterwards. ``weight_gradients`` reads ``d_ih``/``d_hh`` with any row stride, and on the
  CPU a ``d_hh`` narrower than ``d_ih`` as its last columns.
- ``weight_gradients`` builds ``grad_w_hh`` from the states each step started from without
  storing them: ``out`` shifted by one step (columns ``col:col+H``), plus ``h0`` for each
  row's first step (``t = 0``, or ``lengths[n] - 1`` when ``reverse``). An inactive step's
  output is zero and its gate gradients are zero, so the shifted product needs no masks.
- ``weight_gradients`` *adds* into ``grad_w_*``/``grad_b_*`` and ``grad_x`` (so directions and
  repeated calls accumulate); the caller zeroes them first. ``grad_x`` may be None when the
  input gradient is not needed (the first layer in training), which skips that GEMM.
- Nothing allocates inside the time loop; large workspace comes from the caller.
- The RNN, whose gate gradients have no cache to go over, also has
  ``backward_chunks(w_hh, lengths, reverse, act, out, col, grad_out, grad_h_n, buffer,
  grad_h0)`` on the CPU: BPTT ``len(buffer)`` steps at a time, yielding after each chunk so
  that the caller runs ``weight_gradients`` on it (``cpu/chunks.py``) with the state before
  the chunk as ``h0`` and the lengths clipped to it; a buffer of all ``T`` steps is
  ``backward_sequence``. The CPU's ``weight_gradients`` takes an optional last argument,
  ``column_block`` (gate columns per product), with which the chunks bound the temporary
  products that would otherwise weigh as much as a chunk's gate gradients.
"""
