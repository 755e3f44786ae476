"""transformers is heavy (seconds to import): only building a text model pays for it."""

from __future__ import annotations

import subprocess
import sys


def _loaded(code: str) -> list[str]:
    probe = (
        f"{code}; import sys; print(' '.join(m for m in ('transformers', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.split()


def test_vision_does_not_import_transformers() -> None:
    assert _loaded("import lamina.vision") == []


def test_text_imports_transformers_lazily() -> None:
    assert "transformers" not in _loaded("import lamina.text")
