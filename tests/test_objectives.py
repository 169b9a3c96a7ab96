"""The objective protocol (ebm/objectives/base.py): what the train loop may ask, answered by every objective."""
import pytest
import torch

from ebm.config import parse_params
from ebm.models import build_model
from ebm.objectives import REGISTRY, Batch, Objective, build_objective
from ebm.objectives.jem import JEM
from tests.conftest import tiny_params_dict


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return Batch(x_lab=x, y=torch.arange(n) % 2, x_px=x.flip(0), x_px_clean=x)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_objective_answers_the_protocol(name):
    p = parse_params(tiny_params_dict())
    data = (torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2)
    obj = build_objective(name, p, n_classes=2, data=data)
    assert isinstance(obj, Objective) and obj.name == name
    model = build_model(p.model, 2)
    loss, logs = obj.loss(model, _batch())
    assert loss.ndim == 0 and torch.isfinite(loss) and {"loss", "acc"} <= set(logs)
    assert obj.uses_sam == (name == "sada_jem")
    if obj.uses_sam:
        assert set(obj.sam) == {"rho", "adaptive"} and obj.perturbed_loss(model, _batch()).ndim == 0
    else:
        with pytest.raises(NotImplementedError, match="does not use SAM"):
            obj.perturbed_loss(model, _batch())
    state = obj.state_dict()
    again = build_objective(name, p, n_classes=2, data=data)
    again.load_state_dict(state)
    assert again.state_dict().keys() == state.keys()


def test_hdge_jem_composes_jem_on_its_own_section():
    p = parse_params(tiny_params_dict())
    obj = build_objective("hdge_jem", p, n_classes=2)
    assert type(obj.jem) is JEM and obj.jem.cfg is p.train.hdge_jem
    assert len(obj.jem.buffer.buffer) == p.train.hdge_jem.buffer_size
