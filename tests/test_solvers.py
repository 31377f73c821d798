"""Closed-form solvers satisfy their defining equations on random matrices."""

from __future__ import annotations

import torch

from factscope.edit.solvers import least_squares_update, rank_one_from_residual, rank_one_update


def _spd(n: int, g: torch.Generator) -> torch.Tensor:
    A = torch.randn(n, 3 * n, generator=g, dtype=torch.float64)
    return A @ A.T / (3 * n)


def test_rank_one_stores_the_pair() -> None:
    g = torch.Generator().manual_seed(1)
    W = torch.randn(7, 11, generator=g, dtype=torch.float64)
    C, k, v = _spd(11, g), torch.randn(11, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
    lam, u = rank_one_update(W, C, k, v)
    W_new = W + torch.outer(lam, u)
    torch.testing.assert_close(W_new @ k, v)


def test_rank_one_is_the_least_change_in_the_c_norm() -> None:
    g = torch.Generator().manual_seed(2)
    W = torch.randn(5, 9, generator=g, dtype=torch.float64)
    C, k, v = _spd(9, g), torch.randn(9, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    lam, u = rank_one_update(W, C, k, v)
    best = torch.outer(lam, u)
    cost = lambda D: torch.trace(D @ C @ D.T)  # noqa: E731
    # any other update that stores the pair is best + X with X k = 0
    for _ in range(20):
        X = torch.randn(5, 9, generator=g, dtype=torch.float64)
        X = X - torch.outer(X @ k, k) / (k @ k)
        assert torch.allclose(((W + best + X) @ k), v)
        assert cost(best + X) >= cost(best) - 1e-9


def test_rank_one_with_a_separate_storage_key() -> None:
    g = torch.Generator().manual_seed(3)
    C, k, k_store, r = _spd(6, g), *(torch.randn(n, generator=g, dtype=torch.float64) for n in (6, 6, 4))
    lam, u = rank_one_from_residual(C, k, r, k_store)
    torch.testing.assert_close(torch.outer(lam, u) @ k_store, r)
    torch.testing.assert_close(u, torch.linalg.solve(C, k))


def test_least_squares_solves_the_normal_equations() -> None:
    g = torch.Generator().manual_seed(4)
    C, K, R, lam = _spd(10, g), torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64), 3.0
    U, V = least_squares_update(R, K, C, lam)
    delta = U @ V.T
    # argmin_Δ λ tr(Δ C Δᵀ) + ‖Δ K − R‖²  ⇔  Δ (λC + KKᵀ) = R Kᵀ
    torch.testing.assert_close(delta @ (lam * C + K @ K.T), R @ K.T)
    assert U.dtype == torch.float64 and V.shape == (10, 4)


def test_least_squares_reduces_to_exact_storage_without_prior() -> None:
    g = torch.Generator().manual_seed(5)
    C, K, R = _spd(8, g), torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    U, V = least_squares_update(R, K, C, lam=1e-10)
    torch.testing.assert_close(U @ V.T @ K, R, rtol=1e-5, atol=1e-6)


def test_singular_covariance_gives_a_finite_update_that_still_stores_the_keys() -> None:
    """A covariance from fewer tokens than dimensions is singular; the solve must not return inf/NaN."""
    g = torch.Generator().manual_seed(6)
    X = torch.randn(10, 3, generator=g, dtype=torch.float64)
    C = X @ X.T / 3  # rank 3 of 10
    K, R = torch.randn(10, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    U, V = least_squares_update(R, K, C, lam=1.0)
    assert torch.isfinite(V).all()
    torch.testing.assert_close(U @ V.T @ K, R, rtol=1e-4, atol=1e-4)  # K lies in the solvable span
    lam_, u = rank_one_update(torch.randn(5, 10, generator=g, dtype=torch.float64), C, K[:, 0], R[:, 0])
    assert torch.isfinite(u).all() and torch.isfinite(lam_).all()
