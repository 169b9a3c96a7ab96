import numpy as np
import torch

from ebm.config import GenerateConfig
from ebm.generate import class_rows, find_buffer, generate, grids


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
    cfg = GenerateConfig(seed=0, n_samples=6, n_per_class=4, sgld_steps=20, sgld_lr=0.5, sgld_std=0.0, batch_size=5)
    out = generate(model, cfg, torch.device("cpu"), n_classes=3, buffer=torch.rand(10, 3, 32, 32) * 2 - 1,
                   progress=False)
    assert out["fresh"].shape == (6, 32, 32, 3) and out["buffer"].shape == (6, 32, 32, 3)
    assert out["cond_y"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert (out["cond_pred"] == out["cond_y"]).all()  # ascent on f(x)[y] of a linear model makes y the argmax
    again = generate(model, cfg, torch.device("cpu"), n_classes=3, buffer=torch.rand(10, 3, 32, 32) * 2 - 1,
                     progress=False)
    np.testing.assert_array_equal(again["fresh"], out["fresh"])  # seeded
    g = grids(out, n_classes=3)
    assert set(g) == {"fresh", "cond", "buffer"} and g["cond"].shape == (3 * 34 + 2, 4 * 34 + 2, 3)
