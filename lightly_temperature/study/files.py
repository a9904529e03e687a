"""Writing the study's files so that a crash leaves the old file or the new one, never a part.

Example:
    >>> from lightly_temperature.study.files import write_atomically
    >>> write_atomically(Path("study_output/study.json"), text)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path``, flushes it to disk and renames it
    over ``path`` (``os.replace`` is atomic); the temporary file is removed on any error."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
