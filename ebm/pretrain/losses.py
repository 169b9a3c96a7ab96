"""The two losses of hybrid pretraining: NT-Xent (SimCLR) and a discretized-logistic likelihood in bits/dim."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BIN = 1.0 / 255.0  # half the width of one of 256 levels on the [-1, 1] scale


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over 2N views: for each anchor, cross-entropy of its other view against the
    2N − 2 other images, on cosine similarities / τ; mean over the 2N anchors. z1, z2: (N, D)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    sim = z @ z.T / temperature  # (2N, 2N)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # (2N,) index of the pair
    return F.cross_entropy(sim, target)


def discretized_logistic_logprob(x: torch.Tensor, logit_pi: torch.Tensor, mean: torch.Tensor,
                                 log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit values x ∈ {-1, -1 + 2/255, …, 1} under a mixture of logistics discretized to 256
    bins (PixelCNN++ without channel coupling); the edge bins take the tails, so the 256 masses sum to 1.
    x: (...); the mixture parameters: (..., K). Returns (...)."""
    x = x.unsqueeze(-1)  # (..., 1)
    log_scale = log_scale.clamp(min=-7.0)
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    plus, minus = inv_s * (centered + BIN), inv_s * (centered - BIN)
    log_cdf_plus = plus - F.softplus(plus)  # log σ(plus): the lowest bin's mass
    log_1m_cdf_minus = -F.softplus(minus)  # log(1 − σ(minus)): the highest bin's mass
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)  # density at the bin centre, for tiny deltas
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_pdf_mid + math.log(2 * BIN))
    lp = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_1m_cdf_minus, log_mid))
    return torch.logsumexp(lp + F.log_softmax(logit_pi, dim=-1), dim=-1)


def bits_per_dim(log_prob: torch.Tensor, n_dims: int) -> torch.Tensor:
    """−log₂ p(x) / D from a log-likelihood in nats summed over the D sub-pixels of each image."""
    return -log_prob / (n_dims * math.log(2.0))
