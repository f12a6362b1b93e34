"""Offline evaluation: datasets, metrics, baselines, runner."""
