"""GEMM phases shared by every cell on the CPU: plain NumPy, i.e. the BLAS NumPy links."""

import numpy as np


def project_input(x, w_ih, b_ih, proj):
    """``proj = x @ w_ih.T + b_ih`` over all ``T*N`` rows at once (one GEMM)."""
    rows = x.shape[0] * x.shape[1]
    flat = proj.reshape(rows, proj.shape[2])
    np.matmul(x.reshape(rows, x.shape[2]), w_ih.T, out=flat)
    flat += b_ih


def weight_gradients(x, h_prev, d_ih, d_hh, w_ih, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh,
                     grad_x):
    """Add the weight, bias and input gradients of one layer and direction (GEMMs)."""
    rows = x.shape[0] * x.shape[1]
    gates = d_ih.shape[2]
    d_ih2 = d_ih.reshape(rows, gates)
    d_hh2 = d_hh.reshape(rows, gates)
    grad_w_ih += d_ih2.T @ x.reshape(rows, x.shape[2])
    grad_w_hh += d_hh2.T @ h_prev.reshape(rows, h_prev.shape[2])
    grad_b_ih += d_ih2.sum(axis=0)
    grad_b_hh += d_hh2.sum(axis=0)
    grad_x.reshape(rows, grad_x.shape[2])[...] += d_ih2 @ w_ih
