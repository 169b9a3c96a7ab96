"""Test package (a regular package: torch-fidelity 0.4 installs a top-level `tests` package that would shadow a namespace one)."""
