"""Write artifacts beside the output folder, then publish them in one step."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from types import TracebackType


class StagingDir:
    """A sibling temporary folder on the same filesystem as the output folder.

    A run that fails or is killed never touches the output folder; a run that
    succeeds publishes with renames, which are atomic on one filesystem.
    """

    def __init__(self, output_dir: Path | str) -> None:
        self.output_dir = Path(output_dir).resolve()
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(
            tempfile.mkdtemp(dir=self.output_dir.parent, prefix=f".{self.output_dir.name}.partial-")
        )
        self._published = False

    def __enter__(self) -> StagingDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._published:
            shutil.rmtree(self.path, ignore_errors=True)

    def publish(self, file_names: list[str]) -> None:
        """Move the files into the output folder; the last name is published last.

        A new or empty output folder is replaced by the staging folder in one
        rename. Into a folder that holds other files, each file is renamed in
        turn, the metadata last, so a reader never finds new metadata that
        describes an ONNX file not yet in place.
        """
        for name in file_names:
            if not (self.path / name).is_file():
                raise FileNotFoundError(f"staging folder lacks {name}")
        if self._replace_whole_folder():
            self._published = True
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for name in file_names:
            (self.path / name).replace(self.output_dir / name)
        self._published = True
        shutil.rmtree(self.path, ignore_errors=True)

    def _replace_whole_folder(self) -> bool:
        if self.output_dir.is_dir():
            if any(self.output_dir.iterdir()):
                return False
            # Another process may have put a file there since; then rmdir fails
            # and the per-file path runs instead.
            with contextlib.suppress(OSError):
                self.output_dir.rmdir()
        try:
            self.path.rename(self.output_dir)
        except OSError:
            return False
        return True
