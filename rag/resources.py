"""Files that ship with the package: the prompt templates and the sample articles.

They live at the top of the repository (``prompts/``, ``data/sample/``) so they are easy to
read and edit, and are packaged as ``rag._prompts`` / ``rag._sample``; a plain ``pip install .``
therefore works from any directory. In a source checkout (or an editable install) those
packages do not exist and the repository folders are used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
_FOLDERS = {"prompts": ("rag._prompts", _SOURCE_ROOT / "prompts"),
            "sample": ("rag._sample", _SOURCE_ROOT / "data" / "sample")}


def bundled(name: str) -> Path:
    package, source = _FOLDERS[name]
    try:  # a folder of data files is a namespace package: its location is the search path
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations and Path(locations[0]).is_dir() else source


def prompts_dir() -> Path:
    return bundled("prompts")


def sample_dir() -> Path:
    return bundled("sample")
