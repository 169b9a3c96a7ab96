"""One rank of a 2-process jem run whose rank 1 alone sees a NaN loss at step 3 (run by tests/test_ddp.py
under torchrun). Each rank writes what it did to ``<out>/rank<r>.json``: its retries, the steps it logged
and a digest of its final weights."""
import hashlib
import json
import sys
from pathlib import Path

import torch

from ebm.config import load_params
from ebm.data import load_dataset
from ebm.distributed import joined
from ebm.train import train


def main(params: str, data: str, out: str) -> None:
    fired = []

    def fault(step: int, loss: float, logs: dict) -> tuple[float, dict]:
        if world.rank == 1 and step == 3 and not fired:
            fired.append(step)
            return float("nan"), logs
        return loss, logs

    with joined(torch.device("cpu")) as (world, device):
        result = train(load_params(params), "jem", load_dataset(data), device, log_every=1, progress=False,
                       checkpoint_every=2, fault=fault, world=world)
        digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in result.model.state_dict().values()))
        Path(out, f"rank{world.rank}.json").write_text(json.dumps(
            {"retries": result.retries, "steps": [row["step"] for row in result.history],
             "weights": digest.hexdigest()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
