"""Dataset registry, verified downloads and safe archive extraction, with no torch import.

This is the implementation behind `lamina.data.external` (import the public names from there). It lives
outside `lamina.data` because importing anything under `lamina.data` runs that package's `__init__`, which
imports torch (~2.5 s): `lamina datasets` lists and fetches datasets without it. It imports nothing from the
rest of lamina, so it sits below every layer.
"""

__all__: list[str] = []
