"""Decides whether the C extensions are used (the aio-libs convention)."""

from __future__ import annotations

import os
import platform

NO_EXTENSIONS = bool(os.environ.get("GRACEFUL_GRPC_NO_EXTENSIONS"))
IS_PYPY = platform.python_implementation() == "PyPy"
USE_EXTENSIONS = not NO_EXTENSIONS and not IS_PYPY
