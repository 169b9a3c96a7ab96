import pytest
import torch

from ebm.config import ModelConfig
from ebm.models import build_model, energy, log_px


@pytest.mark.parametrize("norm", ["none", "batch", "group", "instance"])
@pytest.mark.parametrize("init", ["pytorch", "kaiming"])
def test_wrn_shapes_and_energy(norm, init):
    cfg = ModelConfig(arch="wrn", depth=10, width=1, norm=norm, dropout=0.1, leak=0.2, init=init)
    model = build_model(cfg, n_classes=7).eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.allclose(energy(logits), -torch.logsumexp(logits, 1))
    assert torch.allclose(log_px(logits), -energy(logits))


def test_wrn_depth_gives_blocks():
    cfg = ModelConfig(arch="wrn", depth=16, width=2, norm="none", dropout=0.0, leak=0.2, init="pytorch")
    model = build_model(cfg, n_classes=10)
    assert len(model.blocks) == 6  # (16 - 4) / 6 = 2 blocks per stage × 3 stages
    assert model.fc.in_features == 128
