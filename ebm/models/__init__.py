"""Backbones. Every model maps images (B, 3, 32, 32) in [-1, 1] to logits (B, C)."""
from ebm.models.wrn import WideResNet, build_model, energy, log_px  # noqa: F401
