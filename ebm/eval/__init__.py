"""Evaluation: classification and calibration, OOD detection."""
