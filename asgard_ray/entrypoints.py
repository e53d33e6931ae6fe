"""Helpers shared by the ``jobs/*`` entrypoints and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["load_request"]


def load_request(value: str) -> dict[str, Any]:
    """Parse a request given as a JSON file path, ``@path``, or inline JSON text."""
    text = value.strip()
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    elif not text.startswith("{"):
        text = Path(text).read_text()
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("the request must be a JSON object")
    return obj
