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


def test_wrn_28_10_is_the_jem_architecture():
    """METHODS §1.3: stem 3→16, 3 stages × 4 pre-activation blocks of widths 160/320/640, strides 1/2/2,
    8×8 pooling to a 640-d feature, ≈36.5M parameters; each image's logits do not depend on its batch."""
    cfg = ModelConfig(arch="wrn", depth=28, width=10, norm="none", dropout=0.0, leak=0.2, init="pytorch")
    model = build_model(cfg, n_classes=10).eval()
    n = sum(p.numel() for p in model.parameters())
    assert 36.4e6 < n < 36.6e6
    assert len(model.blocks) == 12 and model.fc.in_features == 640
    assert model.stem.in_channels == 3 and model.stem.out_channels == 16 and model.stem.bias is not None


@pytest.mark.parametrize("norm", ["none", "group", "instance"])
def test_wrn_logits_of_an_image_do_not_depend_on_the_rest_of_the_batch(norm):
    cfg = ModelConfig(arch="wrn", depth=10, width=1, norm=norm, dropout=0.0, leak=0.2, init="kaiming")
    model = build_model(cfg, n_classes=5).eval()
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        whole, alone = model(x), torch.cat([model(x[i:i + 1]) for i in range(6)])
        assert torch.allclose(whole, alone, atol=1e-5)
        assert not torch.allclose(whole[0], whole[1])  # and they depend on the image
