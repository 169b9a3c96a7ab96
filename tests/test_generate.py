import numpy as np
import torch

from ebm.config import GenerateConfig
from ebm.generate import class_rows, find_buffer, generate, grids, objective_sampler


def test_find_buffer_wherever_the_objective_nests_it():
    t = torch.zeros(4, 3, 32, 32)
    assert find_buffer({"buffer": {"buffer": t}}) is t
    assert find_buffer({"queue": {"data": torch.zeros(8, 10)}, "jem": {"buffer": {"buffer": t}}}) is t
    assert find_buffer({"queue": {"data": torch.zeros(8, 10), "ptr": 0}}) is None


def test_class_rows_puts_most_confident_first_and_leaves_blanks():
    x = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)  # image i is all i
    label = np.array([1, 0, 1, 1, 0])
    score = np.array([0.1, 0.5, 0.9, 0.3, 0.7])
    rows = class_rows(x, label, n_classes=3, per_row=2, score=score)
    assert rows[:, 0, 0, 0].tolist() == [4, 1, 2, 3, 255, 255]  # class 0: .7 then .5; class 1: .9, .3; class 2 blank


def test_class_conditional_chains_move_towards_their_class():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    cfg = GenerateConfig(seed=0, mode="fresh", n_samples=6, n_per_class=4, calls=0, reinit_freq=0.05, sgld_steps=20,
                         sgld_lr=0.5, sgld_std=0.0, batch_size=5)
    sampler = objective_sampler("softmax", {"label_smoothing": 0.0}, cfg, torch.device("cpu"), n_classes=3)
    out = generate(model, cfg, torch.device("cpu"), n_classes=3, buffer=torch.rand(10, 3, 32, 32) * 2 - 1,
                   sampler=sampler, progress=False)
    assert out["fresh"].shape == (6, 32, 32, 3) and out["buffer"].shape == (6, 32, 32, 3)
    assert out["cond_y"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert (out["cond_pred"] == out["cond_y"]).all()  # ascent on f(x)[y] of a linear model makes y the argmax
    again = generate(model, cfg, torch.device("cpu"), n_classes=3, buffer=torch.rand(10, 3, 32, 32) * 2 - 1,
                     sampler=sampler, progress=False)
    np.testing.assert_array_equal(again["fresh"], out["fresh"])  # seeded
    g = grids(out, n_classes=3)
    assert set(g) == {"fresh", "cond", "buffer"} and g["cond"].shape == (3 * 34 + 2, 4 * 34 + 2, 3)


def _section(objective: str, **kw) -> dict:
    from ebm.config import load_params, to_dict
    from tests.conftest import REPO

    return {**to_dict(getattr(load_params(REPO / "params.yaml").train, objective)), **kw}


def test_the_objectives_that_train_a_sampler_generate_with_it():
    """Each objective says whether it trains SGLD chains; those that do generate with their own sampler
    (hdge_jem with its JEM part's, here at the section's SGLD step), the others with JEM's default."""
    from ebm.objectives import REGISTRY

    assert {k for k, v in REGISTRY.items() if v.trains_sampler} == {"jem", "jempp", "sada_jem", "hdge_jem"}
    cfg = GenerateConfig(seed=0, mode="fresh", n_samples=4, n_per_class=0, calls=0, reinit_freq=0.0, sgld_steps=1,
                         sgld_lr=0.25, sgld_std=0.0, batch_size=4)
    own = objective_sampler("hdge_jem", _section("hdge_jem", sgld_lr=0.75), cfg, torch.device("cpu"), n_classes=2)
    assert own.lr == 0.75 and "trains no sampler" not in own.name
    other = objective_sampler("hdge", _section("hdge"), cfg, torch.device("cpu"), n_classes=2)
    assert other.lr == 0.25 and "hdge trains no sampler" in other.name


def test_generation_uses_the_objectives_own_sampler_and_init():
    """JEM++ (METHODS §2.2): chains start from the class Gaussians and move by clipped steps projected
    onto [-1, 1]; the caption names that sampler. Softmax has none: JEM's SGLD from U(-1, 1)."""
    cfg = GenerateConfig(seed=0, mode="fresh", n_samples=4, n_per_class=0, calls=0, reinit_freq=0.0, sgld_steps=1,
                         sgld_lr=1.0, sgld_std=0.0, batch_size=4)
    x = torch.full((20, 3, 32, 32), 0.5) + 0.01 * torch.randn(20, 3, 32, 32)  # two classes of grey images
    y = torch.arange(20) % 2
    s = objective_sampler("jempp", _section("jempp", sgld_lr=3.0, init_jitter=1e-4), cfg, torch.device("cpu"),
                          n_classes=2, data=(x, y))
    assert s.grad_clip == 1.0 and s.clamp and s.lr == 3.0 and "class-Gaussian" in s.name and "jempp" in s.name
    x0 = s.init(64)
    assert (x0 - 0.5).abs().max() < 0.2  # near the data, not U(-1, 1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    with torch.no_grad():
        model[1].weight.fill_(100.0)  # a huge gradient: clipped to ±1, then α·1 = 3 moves every pixel to the box
    out = s.run(model, x0, steps=1)
    assert torch.equal(out, torch.ones_like(out))
    plain = objective_sampler("softmax", {"label_smoothing": 0.0}, cfg, torch.device("cpu"), n_classes=2)
    assert plain.grad_clip == 0 and not plain.clamp and "U(-1, 1)" in plain.name and "softmax" in plain.name


def test_persistent_mode_follows_jems_recipe():
    """JEM's uncond_samples (METHODS §1.6): a buffer of n_samples chains, `calls` calls of sgld_steps steps on
    batch_size chains drawn from it; every call moves chains of the buffer, which is what is scored."""
    from ebm.generate import persistent_chains
    from ebm.sampling import ChainSampler

    calls = []

    class Counting(ChainSampler):
        def run(self, model, x0, *, steps, y=None, generator=None):
            calls.append((len(x0), steps))
            return x0 + 1.0

    s = Counting(lambda n, classes=None: torch.zeros(n, 3, 32, 32), lr=1.0, std=0.0)
    cfg = GenerateConfig(seed=0, mode="persistent", n_samples=50, n_per_class=0, calls=30, reinit_freq=0.0,
                         sgld_steps=7, sgld_lr=1.0, sgld_std=0.0, batch_size=10)
    torch.manual_seed(0)
    buf = persistent_chains(torch.nn.Identity(), cfg, s, torch.Generator(), progress=False)
    assert calls == [(10, 7)] * 30 and buf.shape == (50, 3, 32, 32)
    steps_taken = buf[:, 0, 0, 0]  # each image counts the calls that advanced it
    assert steps_taken.sum() <= 300 and steps_taken.max() >= 3  # chains persist across calls
