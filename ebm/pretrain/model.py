"""A causal ViT encoder over patches with an autoregressive decoder head and a projection head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebm.pretrain.losses import bits_per_dim, discretized_logistic_logprob


class CausalBlock(nn.Module):
    """Pre-norm transformer block whose attention sees only earlier positions (and itself)."""

    def __init__(self, *, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        h = h + self.out(a.transpose(1, 2).reshape(b, t, d))
        return h + self.mlp(self.ln2(h))


class HybridTransformer(nn.Module):
    """Input sequence [start, p_0, …, p_{T-1}] of patch embeddings (raster order). The encoder's output at
    position t has seen only the start token and patches < t, so the decoder's output at t is a proper
    autoregressive prediction of patch t; the representation is the mean of all T+1 encoder outputs.

    patch_size: pixels per patch side (4 → T = 64); dim, heads: transformer width and heads;
    encoder_depth / decoder_depth: causal blocks; mixtures: logistic components per sub-pixel."""

    def __init__(self, *, patch_size: int = 4, dim: int = 64, encoder_depth: int = 2, decoder_depth: int = 1,
                 heads: int = 4, mixtures: int = 2, proj_dim: int = 64, image_size: int = 32):
        super().__init__()
        self.p, self.k = patch_size, mixtures
        self.t = (image_size // patch_size) ** 2
        self.pd = 3 * patch_size * patch_size  # sub-pixels per patch
        self.embed = nn.Linear(self.pd, dim)
        self.start = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, self.t + 1, dim))
        self.encoder = nn.ModuleList(CausalBlock(dim=dim, heads=heads) for _ in range(encoder_depth))
        self.decoder = nn.ModuleList(CausalBlock(dim=dim, heads=heads) for _ in range(decoder_depth))
        self.ln_enc, self.ln_dec = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.pd * mixtures * 3)  # (logit π, mean, log s) per sub-pixel and component
        self.proj = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, proj_dim))

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, T, 3·p·p) in raster order of patches."""
        b, c, h, w = x.shape
        p = self.p
        return x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (B, T+1, dim) for images x in [-1, 1]."""
        tok = torch.cat([self.start.expand(len(x), -1, -1), self.embed(self.patches(x))], 1) + self.pos  # (B, T+1, D)
        for blk in self.encoder:
            tok = blk(tok)
        return self.ln_enc(tok)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Mixture parameters (B, T, 3·p·p, K, 3) of patch t from encoder outputs at positions ≤ t."""
        d = h[:, :self.t]  # (B, T, D): position t has seen patches < t
        for blk in self.decoder:
            d = blk(d)
        return self.head(self.ln_dec(d)).view(len(h), self.t, self.pd, self.k, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixture parameters (B, T, 3p², K, 3), pooled features (B, D))."""
        h = self.encode(x)
        return self.decode(h), h.mean(1)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per image (B,), x on the 8-bit grid of [-1, 1]."""
        target = self.patches(x)  # (B, T, 3p²)
        lp = discretized_logistic_logprob(target, params[..., 0], params[..., 1], params[..., 2])  # (B, T, 3p²)
        return lp.flatten(1).sum(1)

    def bpd(self, x: torch.Tensor) -> torch.Tensor:
        """Bits per dimension of each image (B,)."""
        params, _ = self(x)
        return bits_per_dim(self.log_prob(x, params), x[0].numel())
