"""Hybrid generative-contrastive pretraining: causality, the two losses, corruptions, training, I/O."""
import math

import numpy as np
import pytest
import torch

from ebm.config import CORRUPTIONS, PretrainConfig, load_params
from ebm.pretrain.corruptions import corrupt
from ebm.pretrain.losses import bits_per_dim, discretized_logistic_logprob, nt_xent
from ebm.pretrain.model import HybridTransformer
from ebm.pretrain.train import load_pretrained, pretrain_one, save_pretrained
from ebm.pretrain.views import random_view
from tests.conftest import REPO, tiny_params_dict


def tiny_cfg(**kw) -> PretrainConfig:
    raw = tiny_params_dict()["pretrain"]
    raw.update(kw)
    return PretrainConfig(**raw)


def test_decoder_is_causal():
    torch.manual_seed(0)
    model = HybridTransformer(patch_size=8, dim=16, encoder_depth=2, decoder_depth=1, heads=2, mixtures=2).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    params, _ = model(x)  # (B, T=16, 192, K, 3): position t predicts patch t
    for t in (0, 5, 15):
        y = model.patches(x).clone()  # (B, T, 3p²)
        y[:, t:] = torch.rand_like(y[:, t:]) * 2 - 1  # change patches t, t+1, …
        x2 = y.view(2, 4, 4, 3, 8, 8).permute(0, 3, 1, 4, 2, 5).reshape(2, 3, 32, 32)
        assert torch.equal(model.patches(x2), y)
        params2, _ = model(x2)
        torch.testing.assert_close(params2[:, :t + 1], params[:, :t + 1], rtol=0, atol=1e-5)  # ≤ t unchanged
        if t < 15:
            assert not torch.allclose(params2[:, t + 1:], params[:, t + 1:])  # later outputs see the change


def test_nt_xent_equals_hand_computation():
    torch.manual_seed(0)
    z1, z2, tau = torch.randn(3, 4), torch.randn(3, 4), 0.5
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n2, total = 6, 0.0
    for i in range(n2):
        pos = (i + 3) % n2
        num = math.exp(float(z[i] @ z[pos]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(num / den)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / n2, rel=1e-6)


def test_uniform_model_has_8_bits_per_dim_and_the_likelihood_is_normalised():
    d = 3 * 32 * 32  # a uniform model gives every 8-bit sub-pixel probability 1/256: log p(x) = D·log(1/256)
    assert bits_per_dim(torch.tensor(d * math.log(1 / 256), dtype=torch.float64), d).item() == pytest.approx(8.0, abs=1e-12)
    assert bits_per_dim(torch.full((5,), d * math.log(1 / 256)), d).tolist() == pytest.approx([8.0] * 5)
    levels = torch.arange(256).float() / 127.5 - 1  # the 256 values of an 8-bit sub-pixel in [-1, 1]
    for mean, log_s in ((0.0, -2.0), (0.9, -4.0), (-1.0, 0.5)):
        k = torch.tensor([[0.3, -0.2]]).expand(256, 2)
        lp = discretized_logistic_logprob(levels, k, torch.tensor([[mean, -0.5]]).expand(256, 2),
                                          torch.tensor([[log_s, -3.0]]).expand(256, 2))
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-4)


def test_model_bits_per_dim_of_an_untrained_model_is_finite():
    model = HybridTransformer(patch_size=4, dim=16, encoder_depth=1, decoder_depth=0, heads=2, mixtures=1)
    x = torch.randint(0, 256, (2, 3, 32, 32)).float() / 127.5 - 1
    bpd = model.bpd(x)
    assert bpd.shape == (2,) and torch.isfinite(bpd).all() and (bpd > 0).all()


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_set_is_deterministic(name):
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    for s in range(1, 6):
        a, b = corrupt(x, name, s, seed=0), corrupt(x, name, s, seed=0)
        assert a.dtype == np.uint8 and a.shape == x.shape
        np.testing.assert_array_equal(a, b)
    err = [np.abs(corrupt(x, name, s).astype(float) - x).mean() for s in (1, 5)]
    assert err[1] > err[0] > 0


def test_views_are_seeded_and_stay_in_range():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    a = random_view(x, crop_scale=0.5, color_jitter=0.4, generator=torch.Generator().manual_seed(1))
    b = random_view(x, crop_scale=0.5, color_jitter=0.4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a, x)
    same = random_view(x, crop_scale=1.0, color_jitter=0.0, generator=torch.Generator().manual_seed(1))
    flipped_or_not = [torch.allclose(same[i], x[i], atol=1e-5) or torch.allclose(same[i], x[i].flip(-1), atol=1e-5)
                      for i in range(4)]
    assert all(flipped_or_not)  # a full-size crop without jitter is the image or its mirror


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_training_lowers_its_loss_and_is_seeded(weight):
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    x[:, :16] //= 4  # some structure to learn
    cfg = tiny_cfg(steps=12, batch_size=8, warmup_steps=1, lr=3e-3)
    m1, h1, _ = pretrain_one(x, cfg, weight, torch.device("cpu"), progress=False, log_every=1)
    m2, h2, _ = pretrain_one(x, cfg, weight, torch.device("cpu"), progress=False, log_every=1)
    for k, v in m1.state_dict().items():
        torch.testing.assert_close(m2.state_dict()[k], v, rtol=0, atol=0)
    first, last = np.mean([r["loss"] for r in h1[:3]]), np.mean([r["loss"] for r in h1[-3:]])
    assert last < first
    assert (not math.isnan(h1[0]["bpd"])) == (weight < 1) and (not math.isnan(h1[0]["ntxent"])) == (weight > 0)


def test_pretrained_model_round_trip_and_bad_file(tmp_path):
    from ebm.checkpoint import CheckpointError
    cfg = tiny_cfg()
    from ebm.pretrain.train import build_model
    model = build_model(cfg)
    save_pretrained(tmp_path / "w.pt", model, cfg, 0.5, {"dataset": "shapes"})
    again, ckpt = load_pretrained(tmp_path / "w.pt")
    assert ckpt["contrastive_weight"] == 0.5
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(again.bpd(x), model.eval().bpd(x))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt: cannot be read"):
        load_pretrained(tmp_path / "bad.pt")


def test_repository_defaults_are_valid():
    assert load_params(REPO / "params.yaml").pretrain.contrastive_weights == [0.0, 0.5, 1.0]
