"""Builds the optional C extension; falls back to pure Python when it cannot be built.

Skipped entirely with GRACEFUL_GRPC_NO_EXTENSIONS=1 or on interpreters other than CPython.
"""

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = bool(os.environ.get("GRACEFUL_GRPC_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)


class OptionalBuildExt(build_ext):
    """A build_ext whose failure (no compiler, no headers) leaves the pure-Python fallback."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "no extension"
            print(f"graceful_grpc: C extension not built ({exc}); using pure Python", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"graceful_grpc: {ext.name} not built ({exc}); using pure Python", file=sys.stderr)


extensions = [
    Extension(
        "graceful_grpc._counter",
        ["graceful_grpc/_counter.c"],
        extra_compile_args=["-std=c11", "-Wall", "-Werror", "-O3"],
    )
]

setup(
    ext_modules=[] if NO_EXTENSIONS else extensions,
    cmdclass={"build_ext": OptionalBuildExt},
)
