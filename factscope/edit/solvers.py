"""Closed-form weight updates, computed in float64.

Usage::

    lam, u = rank_one_update(W, C, k, v)        # ROME: W' = W + lam uᵀ with u = C⁻¹k, W'k = v
    U, V = least_squares_update(R, K, C, lam=1.5e4)   # MEMIT/PMET: Δ = U Vᵀ = R Kᵀ(λC + KKᵀ)⁻¹

``W`` is ``(out, in)``; ``k``/``K`` live in the input space, ``v``/``R`` in the output
space. The rank-one update is the smallest change in the C-norm that stores
``(k, v)``; the least-squares update minimises ``λ‖ΔK₀‖² + ‖(W+Δ)K − V‖²`` where
``C = E[k₀k₀ᵀ]`` summarises the keys that must keep their values.
"""

from __future__ import annotations

import torch


def _solve(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A⁻¹B`` for symmetric PSD ``A`` by Cholesky; a growing ridge rescues a singular estimate.

    LU (``torch.linalg.solve``) on a singular PSD matrix can return inf/NaN without
    raising, and different devices then disagree arbitrarily; Cholesky fails loudly
    instead, and the smallest ridge (from 1e-10 × mean diagonal) that makes it succeed is used.
    """
    scale = float(A.diagonal().abs().mean().clamp(min=1e-30))
    for ridge in (0.0, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2):
        ridged = A.diagonal_scatter(A.diagonal() + ridge * scale) if ridge else A
        factor, info = torch.linalg.cholesky_ex(ridged)
        if int(info) == 0:
            solution = torch.cholesky_solve(B, factor)
            if bool(torch.isfinite(solution).all()):
                return solution
    raise ValueError("The key covariance is not positive semi-definite even with a ridge; recompute it.")


def rank_one_update(W: torch.Tensor, C: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Λ, u)`` with ``W' = W + Λ uᵀ``, ``u = C⁻¹k``, ``Λ = (v − Wk) / (uᵀk)``; float64.

    Then ``W'k = v`` exactly, and among all updates achieving that, ``Λuᵀ`` has the
    least ``tr(Δ C Δᵀ)`` (ROME, eq. 2; RETS eq. 14 with ``C + K_r K_rᵀ`` as ``C``).
    """
    W64, C64, k64, v64 = (t.detach().to(torch.float64) for t in (W, C, k, v))
    if C64.shape != (k64.shape[0], k64.shape[0]) or W64.shape != (v64.shape[0], k64.shape[0]):
        raise ValueError(f"Shapes do not fit: W {tuple(W.shape)}, C {tuple(C.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}.")
    u = _solve(C64, k64.unsqueeze(1)).squeeze(1)
    denom = u @ k64
    if not torch.isfinite(denom) or denom.abs() < 1e-30:
        raise ValueError("The key is (numerically) zero in the metric C; cannot store it.")
    lam = (v64 - W64 @ k64) / denom
    return lam, u


def rank_one_from_residual(
    C: torch.Tensor, k: torch.Tensor, residual: torch.Tensor, k_store: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`rank_one_update` with ``v − Wk`` given directly (``residual``); float64.

    ``k_store`` (default ``k``) is the key at which ``W'k_store = Wk_store + residual``
    holds exactly while the direction stays ``C⁻¹k``. ROME's code uses the averaged key
    for the direction and the bare prompt's key here.
    """
    C64, k64, r64 = (t.detach().to(torch.float64) for t in (C, k, residual))
    ks64 = k64 if k_store is None else k_store.detach().to(torch.float64)
    u = _solve(C64, k64.unsqueeze(1)).squeeze(1)
    denom = u @ ks64
    if not torch.isfinite(denom) or denom.abs() < 1e-30:
        raise ValueError("The key is (numerically) zero in the metric C; cannot store it.")
    return r64 / denom, u


def least_squares_update(R: torch.Tensor, K: torch.Tensor, C: torch.Tensor, lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``(U, V)`` of ``Δ = U Vᵀ = R Kᵀ (λC + KKᵀ)⁻¹``; float64.

    ``R``: ``[out, n]`` residuals, ``K``: ``[in, n]`` keys, ``C``: ``[in, in]``.
    ``U = R`` and ``V = (λC + KKᵀ)⁻¹ K`` (the matrix is symmetric), so the update has rank ≤ n.
    """
    R64, K64, C64 = (t.detach().to(torch.float64) for t in (R, K, C))
    if R64.shape[1] != K64.shape[1] or C64.shape != (K64.shape[0], K64.shape[0]):
        raise ValueError(f"Shapes do not fit: R {tuple(R.shape)}, K {tuple(K.shape)}, C {tuple(C.shape)}.")
    A = lam * C64 + K64 @ K64.T
    return R64, _solve(A, K64)
