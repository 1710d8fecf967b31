"""Conductor's ``rateLimitPerFrequency`` / ``rateLimitFrequencyInSeconds``, enforced across every worker: a
counter per (task type, window) in a KV bucket, incremented with compare-and-set."""

from __future__ import annotations

import time

from .connection import KvBucket
from .errors import CasConflict
from .layout import escape_token

_ATTEMPTS = 32


async def take(bucket: KvBucket, task_type: str, per_window: int, window_seconds: int) -> float:
    """Take one execution slot of the current window: 0.0 if granted, else the seconds until the next window
    (the caller postpones the task by that much, as Conductor does)."""
    window_seconds = max(1, window_seconds)
    for _ in range(_ATTEMPTS):
        now = time.time()
        window = int(now // window_seconds)
        key = f"rate.{escape_token(task_type)}.{window}"
        entry = await bucket.get(key)
        try:
            if entry is None:
                await bucket.create(key, b"1")
                return 0.0
            used = int(entry.value)
            if used >= per_window:
                return (window + 1) * window_seconds - now
            await bucket.update(key, str(used + 1).encode(), entry.revision)
            return 0.0
        except CasConflict:
            continue  # another worker took one meanwhile: look again
    return 0.5  # heavily contended: try again shortly


__all__ = ["take"]
