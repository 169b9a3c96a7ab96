"""Apply a partial params file (e.g. ``configs/paper/jem-cifar10.yaml``) as DVC ``-S`` overrides.

    dvc exp run $(python -m pipeline.overrides configs/paper/jem-cifar10.yaml)

prints one ``-S key=value`` pair per leaf, after checking that the merged params are valid under the
strict loader (an override can only change keys that exist; it cannot add one).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

from ebm.config import ParamsError, load_raw, parse_params


def leaves(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out += leaves(v, key + ".") if isinstance(v, dict) else [(key, v)]
    return out


def merge(base: dict, override: dict, prefix: str = "") -> dict:
    """Deep-merge ``override`` into a copy of ``base``; refuse keys ``base`` does not have."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if k not in out:
            raise ParamsError(f"override adds unknown key {prefix}{k}")
        out[k] = merge(out[k], v, f"{prefix}{k}.") if isinstance(v, dict) else v
    return out


def as_cli(key: str, value: object) -> str:
    if isinstance(value, str):
        return f"{key}={value}"
    return f"{key}={json.dumps(value, separators=(',', ':'))}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file")
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args(argv)
    try:
        override = yaml.safe_load(Path(args.file).read_text())
        parse_params(merge(load_raw(args.params), override))
    except (ParamsError, OSError, yaml.YAMLError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 2
    for key, value in leaves(override):
        print("-S", as_cli(key, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
