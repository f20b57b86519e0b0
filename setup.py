"""Builds the optional C extension; falls back to pure Python when it cannot be built.

Skipped entirely with GRACEFUL_GRPC_NO_EXTENSIONS=1 or on interpreters other than CPython.
Compiler warnings are errors only with GRACEFUL_GRPC_WERROR=1 (set by the project's own
``make test``/CI): a user's newer compiler must not cost them the extension over a warning.
"""

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = bool(os.environ.get("GRACEFUL_GRPC_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)
WERROR = os.environ.get("GRACEFUL_GRPC_WERROR") == "1"

# C11 atomics: MSVC needs /experimental:c11atomics (VS 2022 17.5+); without it the build fails
# and the pure-Python counter is used.
MSVC_ARGS = ["/std:c11", "/experimental:c11atomics", "/W3", *(["/WX"] if WERROR else [])]
GCC_LIKE_ARGS = ["-std=c11", "-O3", "-Wall", *(["-Werror"] if WERROR else [])]


def _fallback_notice(reason: object) -> str:
    rule = "*" * 78
    return (
        f"\n{rule}\n"
        f"graceful_grpc: C extension NOT built ({reason}).\n"
        "graceful_grpc: the pure-Python counter will be used "
        "(graceful_grpc.COUNTER_IMPLEMENTATION == 'python').\n"
        f"{rule}\n"
    )


class OptionalBuildExt(build_ext):
    """A build_ext whose failure (no compiler, no headers) leaves the pure-Python fallback."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any build failure means "no extension"
            print(_fallback_notice(exc), file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        msvc = self.compiler.compiler_type == "msvc"
        ext.extra_compile_args = MSVC_ARGS if msvc else GCC_LIKE_ARGS
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(_fallback_notice(f"{ext.name}: {exc}"), file=sys.stderr)


extensions = [Extension("graceful_grpc._counter", ["graceful_grpc/_counter.c"])]

setup(
    ext_modules=[] if NO_EXTENSIONS else extensions,
    cmdclass={"build_ext": OptionalBuildExt},
)
