"""Shared utilities: data, losses, metrics, training loop, inference, timing."""
