"""Where a dataset's items live on disk, so that decisions can be applied to it: class folders or a CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DatasetSource"]


@dataclass(frozen=True)
class DatasetSource:
    """A dataset on disk: image files under `root` in class folders (`labels_csv` None), or listed in the
    CSV `labels_csv` (file names in column `fn_col`, relative to `root`; labels in `label_col`). Columns
    are names, or positions written as digits."""

    root: Path
    labels_csv: Path | None = None
    fn_col: str = "0"
    label_col: str = "1"

    @property
    def layout(self) -> str:
        return "csv" if self.labels_csv is not None else "folders"

    @property
    def clean_dir(self) -> Path:
        """Beside the dataset (never inside it): the quarantine and the undo journals."""
        root = Path(self.root).absolute()
        return root.parent / f"{root.name}.lamina-clean"
