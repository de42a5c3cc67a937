"""Files sent through the page or the HTTP API: checked, named safely, kept under CRONACA_HOME.

An upload arrives under a name the sender chose and often in a temporary file the web framework
deletes later. We keep only a cleaned base name (no path traversal, no odd characters, unique in
its batch), refuse what the parser would refuse before copying a byte, and keep accepted files in
``<home>/uploads/batch-*`` so an article's ``path`` stays readable after the request ends.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.parsing import IngestError, ItemError, check_file


@dataclass
class Upload:
    name: str  # as the sender named it
    path: Path | None = None  # a file the framework wrote, or
    data: bytes | None = None  # the bytes themselves


@dataclass
class StagedBatch:
    folder: Path
    paths: list[Path] = field(default_factory=list)
    errors: list[IngestError] = field(default_factory=list)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def local(self, text: str) -> str:
        """A message without the staging folder's path: the sender knows the file by its name."""
        return text.replace(str(self.folder) + os.sep, "")


def safe_name(name: str, taken: set[str]) -> str:
    """Basename only, no path traversal, no odd characters, unique within one upload."""
    base = Path(str(name).replace("\\", "/")).name
    base = re.sub(r"[^\w.\-]+", "_", base).lstrip(".") or "file"
    stem, suffix = os.path.splitext(base)
    stem = stem[:80] or "file"
    candidate, i = stem + suffix.lower(), 1
    while candidate in taken:
        i += 1
        candidate = f"{stem}-{i}{suffix.lower()}"
    taken.add(candidate)
    return candidate


def stage(uploads: Iterable[Upload], home: Path, max_bytes: int) -> StagedBatch:
    """Copy acceptable uploads into a new batch folder; one error per refused file."""
    root = Path(home) / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    batch = StagedBatch(Path(tempfile.mkdtemp(prefix="batch-", dir=root)))
    taken: set[str] = set()
    for up in uploads:
        name = safe_name(up.name, taken)
        try:
            size = len(up.data) if up.data is not None else os.path.getsize(up.path or "")
        except OSError as exc:
            batch.errors.append(IngestError(name, f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            check_file(name, size, max_bytes)
        except ItemError as exc:
            batch.errors.append(IngestError(name, str(exc)))
            continue
        dest = batch.folder / name
        if up.data is not None:
            dest.write_bytes(up.data)
        else:
            shutil.copyfile(up.path, dest)
        batch.paths.append(dest)
    return batch
