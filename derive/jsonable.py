"""derive's answers as JSON (the command line's --json, the web API): JSON has no NaN or Infinity,
so a value that is not finite is written as null."""
from __future__ import annotations

import json
import math


def finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(data, sort_keys: bool = False) -> str:
    return json.dumps(finite(data), indent=2, sort_keys=sort_keys, allow_nan=False)
