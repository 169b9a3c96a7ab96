"""Hybrid discriminative-generative classifiers: library."""
