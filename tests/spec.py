"""The API contract: ../shared/ when present, else the copy in tests/data."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_SPEC = REPO.parent / "shared" / "boltic-streams-api-openapi.yml"
VENDORED_SPEC = REPO / "tests" / "data" / "boltic-streams-api-openapi.yml"


def spec_path() -> Path:
    return SHARED_SPEC if SHARED_SPEC.exists() else VENDORED_SPEC


@cache
def load_spec() -> dict[str, Any]:
    return yaml.safe_load(spec_path().read_text(encoding="utf-8"))
