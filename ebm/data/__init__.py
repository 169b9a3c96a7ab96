"""Datasets: the embedded procedural set, torchvision and local sources, OOD sets, and the array store."""
from ebm.data.store import DatasetArrays, load_dataset, write_dataset  # noqa: F401
