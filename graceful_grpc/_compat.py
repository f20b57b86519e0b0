"""Decides whether the C extensions are used (the aio-libs convention)."""

from __future__ import annotations

import os
import sys

NO_EXTENSIONS = bool(os.environ.get("GRACEFUL_GRPC_NO_EXTENSIONS"))
IS_PYPY = sys.implementation.name == "pypy"  # not platform: its import costs milliseconds
USE_EXTENSIONS = not NO_EXTENSIONS and not IS_PYPY
