"""Strict, typed loading of ``params.yaml``, the one source of truth for DVC and Snakemake.

- :mod:`ebm.config.schema`: the sections as frozen dataclasses, and the names they may use;
- :mod:`ebm.config.convert`: YAML → dataclasses with strict key and type checks (and back);
- :mod:`ebm.config.load`: cross-field checks, loading the file, hashing a stage's sections;
- :mod:`ebm.config.runs`: named runs, each the shared sections with its own overrides.
"""
from ebm.config.convert import from_dict, to_dict
from ebm.config.load import load_params, load_raw, load_run_params, params_hash, parse_params, section
from ebm.config.runs import is_named, run_items, run_raw
from ebm.config.schema import (CORRUPTIONS, DATASETS, OBJECTIVES, OOD_SETS, AugmentConfig, DataConfig,
                               EvaluateConfig, GenerateConfig, HdgeConfig, HdgeJemConfig, JemConfig, JemppConfig,
                               ModelConfig, Params, PretrainConfig, SadaJemConfig, SoftmaxConfig, TrainCommon,
                               TrainConfig)
from ebm.errors import ParamsError

__all__ = ["CORRUPTIONS", "DATASETS", "OBJECTIVES", "OOD_SETS", "AugmentConfig", "DataConfig", "EvaluateConfig",
           "GenerateConfig", "HdgeConfig", "HdgeJemConfig", "JemConfig", "JemppConfig", "ModelConfig", "Params",
           "ParamsError", "PretrainConfig", "SadaJemConfig", "SoftmaxConfig", "TrainCommon", "TrainConfig",
           "from_dict", "is_named", "load_params", "load_raw", "load_run_params", "params_hash", "parse_params", "run_items",
           "run_raw", "section", "to_dict"]
