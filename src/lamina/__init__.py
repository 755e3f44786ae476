"""lamina: a layered deep-learning library for PyTorch."""

__version__ = "0.1.0"

