"""The MEND network g: gradient factors (u_t, δ_t) of a layer → pseudo-factors (ũ_t, δ̃_t) → the edit.

Usage::

    net = MENDNetwork({27: (1536, 576), 28: (1536, 576)}, rank=128, n_blocks=2, edit_lr=1e-3)
    u_tilde, d_tilde = net.pseudo_factors(27, u, delta)      # u: [T, in], delta: [T, out]
    up, vp = net.weight_delta(27, u, delta)                  # dW = up @ vp.T = -alpha_27 * sum_t d~_t u~_t^T

For one layer, the fine-tuning gradient of a token-summed loss is ``Σ_t δ_t u_tᵀ``
with u_t the layer's input and δ_t the loss gradient w.r.t. its output. g works on
the concatenation z_t = [u_t; δ_t]: it is normalised with running per-coordinate
mean and variance (buffers, updated in training mode only), passed through residual
blocks ``z ← z + s_l ⊙ B relu(A z + b) + o_l`` (A: rank × D, B: D × rank
initialised at zero, s_l = 1 and o_l = 0 per layer), and mapped back to the raw
scale, so an untrained g returns the raw factors and its edit is one gradient step
of size α_l. (MEND's code keeps the output in normalised units; mapping back makes
the untrained editor plain fine-tuning, which a test checks.) Layers whose weights
have one shape share A, B and b (``shared``); s_l, o_l, α_l and the statistics are
per layer. α_l = exp(ρ_l) is learned through ρ_l, so its step is relative.

Tokens whose δ_t (or u_t) is exactly zero — prompt tokens without a loss after
them, padding — are dropped before anything else: a zero gradient gives a zero edit.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class RunningStats(nn.Module):
    """Per-coordinate count, mean and sum of squared deviations (Chan's parallel update), float64."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` ([n, dim])."""
        if x.shape[0] == 0:
            return
        x = x.detach().to(torch.float64)
        n_b = float(x.shape[0])
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        n_a = float(self.count)
        total = n_a + n_b
        diff = mean_b - self.mean
        self.mean += diff * (n_b / total)
        self.m2 += m2_b + diff**2 * (n_a * n_b / total)
        self.count.fill_(total)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` in float32; mean 0 and std 1 until two rows were seen, std 1 where it is 0."""
        if float(self.count) < 2:
            return torch.zeros_like(self.mean, dtype=torch.float32), torch.ones_like(self.mean, dtype=torch.float32)
        std = (self.m2 / (self.count - 1)).sqrt()
        std = torch.where(std > 0, std, torch.ones_like(std))
        return self.mean.float(), std.float()


class FactorNet(nn.Module):
    """Low-rank residual blocks on z = [u; δ] with per-slot (per-layer) scale and offset."""

    def __init__(self, dim: int, n_slots: int, rank: int, n_blocks: int) -> None:
        super().__init__()
        self.down = nn.ModuleList([nn.Linear(dim, rank) for _ in range(n_blocks)])
        self.up = nn.ModuleList([nn.Linear(rank, dim, bias=False) for _ in range(n_blocks)])
        for up in self.up:
            nn.init.zeros_(up.weight)  # an untrained block adds nothing
        self.scale = nn.Parameter(torch.ones(n_slots, max(n_blocks, 1), dim))
        self.offset = nn.Parameter(torch.zeros(n_slots, max(n_blocks, 1), dim))

    def forward(self, z: torch.Tensor, slot: int) -> torch.Tensor:
        for k, (down, up) in enumerate(zip(self.down, self.up)):
            z = z + self.scale[slot, k] * up(torch.relu(down(z))) + self.offset[slot, k]
        return z


class MENDNetwork(nn.Module):
    """One MEND editor: networks for the edited layers, their statistics and steps α_l."""

    def __init__(self, shapes: dict[int, tuple[int, int]], *, rank: int, n_blocks: int, edit_lr: float,
                 shared: bool = True) -> None:
        """``shapes``: layer → (in, out) of its weight in (out, in) orientation, i.e. (d_in, d_out)."""
        super().__init__()
        self.layers = sorted(shapes)
        self.shapes = {layer: (int(shapes[layer][0]), int(shapes[layer][1])) for layer in self.layers}
        groups: dict[str, list[int]] = {}
        for layer in self.layers:
            name = f"{self.shapes[layer][0]}x{self.shapes[layer][1]}" if shared else f"layer{layer}"
            groups.setdefault(name, []).append(layer)
        self._group = {layer: name for name, members in groups.items() for layer in members}
        self._slot = {layer: members.index(layer) for members in groups.values() for layer in members}
        self.nets = nn.ModuleDict({
            name: FactorNet(sum(self.shapes[members[0]]), len(members), rank, n_blocks) for name, members in groups.items()
        })
        self.stats = nn.ModuleDict({str(layer): RunningStats(sum(self.shapes[layer])) for layer in self.layers})
        self.log_alpha = nn.Parameter(torch.full((len(self.layers),), math.log(edit_lr)))

    def alpha(self, layer: int) -> torch.Tensor:
        return self.log_alpha[self.layers.index(layer)].exp()

    def pseudo_factors(self, layer: int, u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ũ [T', in], δ̃ [T', out])`` for the tokens of ``u`` [T, in], ``delta`` [T, out] with non-zero factors."""
        d_in, d_out = self.shapes[layer]
        u = u.reshape(-1, d_in).float()
        delta = delta.reshape(-1, d_out).float()
        keep = (delta != 0).any(-1) & (u != 0).any(-1)
        z = torch.cat([u[keep], delta[keep]], dim=-1)
        stats = self.stats[str(layer)]
        if self.training:
            stats.update(z)
        mean, std = stats.moments()
        mean, std = mean.to(z.device), std.to(z.device)
        out = self.nets[self._group[layer]]((z - mean) / std, self._slot[layer]) * std + mean
        return out[:, :d_in], out[:, d_in:]

    def weight_delta(self, layer: int, u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-rank factors ``(up [out, T'], vp [in, T'])`` of the edit ``dW = up @ vp.T`` (float32)."""
        u_tilde, d_tilde = self.pseudo_factors(layer, u, delta)
        return -self.alpha(layer) * d_tilde.T, u_tilde.T
