"""Write the test params of `make test-cluster`: the embedded default (objectives, datasets, model)
with everything cut short (tests/conftest.py), and enough jem training to outlast a 1-minute limit."""
import sys
from pathlib import Path

from tests.conftest import tiny_params_dict, write_params

STEPS = 400  # jem: 4-7 minutes on one core of a 2-core CPU, softmax 2-3 (SLURM kills the first attempt 60-90 s in)


def main(out: str) -> None:
    p = tiny_params_dict()
    p["train"]["common"].update(steps=STEPS, batch_size=64, warmup_steps=5)
    p["train"]["jem"].update(sgld_steps=5, buffer_size=500, sample_batch_size=32)
    write_params(Path(out), p)


if __name__ == "__main__":
    main(sys.argv[1])
