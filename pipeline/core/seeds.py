"""Seeds and ids that are the same in every process, machine and Python version (Python's own
`hash` of a string changes per process), so a resumed or re-batched run draws the same
principles, orders and samples."""

from __future__ import annotations

import hashlib
import json


def stable_int(*parts: object) -> int:
    """A 63-bit integer from its parts, the same in every process and Python version."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1
