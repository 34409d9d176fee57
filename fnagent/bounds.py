"""Fn's bounds on a function's memory and timeouts, and their defaults (Fn's ``api/models``).

A leaf: the agent's models, the store's record rules and the configuration all read them, and
none of them should need the Docker driver (or docker-py) for six numbers.
"""

from __future__ import annotations

DEFAULT_MEMORY_MB = 128
MAX_MEMORY_MB = 8192
DEFAULT_TIMEOUT_S = 30
MAX_TIMEOUT_S = 300
DEFAULT_IDLE_TIMEOUT_S = 30
MAX_IDLE_TIMEOUT_S = 3600
