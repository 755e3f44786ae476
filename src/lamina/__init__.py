"""lamina: a layered deep-learning library for PyTorch.

Applications (`lamina.vision`) sit on the training loop (`lamina.train`), which sits on the data pipeline
(`lamina.data`), which sits on typed transforms (`lamina.core`). Import what you need from each layer.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
