"""The library's logger (``graceful_grpc``), which never raises into the code that logs.

A handler whose ``emit()`` raises (``logging.Handler`` subclasses must catch their own errors,
but a custom one may not) would otherwise stop a drain or a shutdown halfway: a channel left
DRAINING with its grpc channel open, a ``close()`` that never returns. So a failure is reported
the way logging reports its own handlers' failures (a traceback on stderr while
``logging.raiseExceptions`` is true, as by default) and the drain goes on.

Messages carry no ``graceful_grpc:`` prefix: the logger's name says where they come from.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ("logger",)


class _Logger:
    """``debug``/``info``/``warning``/``error``/``exception`` of logger ``graceful_grpc``; the
    records name the caller's file, line and function, as ``logging.Logger``'s would."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def debug(self, msg: str, *args: object) -> None:
        self._log(logging.DEBUG, msg, args, False)

    def info(self, msg: str, *args: object) -> None:
        self._log(logging.INFO, msg, args, False)

    def warning(self, msg: str, *args: object) -> None:
        self._log(logging.WARNING, msg, args, False)

    def error(self, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        self._log(logging.ERROR, msg, args, exc_info)

    def exception(self, msg: str, *args: object) -> None:
        """``error`` with the exception being handled."""
        self._log(logging.ERROR, msg, args, True)

    def _log(
        self, level: int, msg: str, args: tuple[object, ...], exc_info: BaseException | bool | None
    ) -> None:
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        caller = sys._getframe(2)
        try:
            exc: Any = None
            if isinstance(exc_info, BaseException):
                exc = (type(exc_info), exc_info, exc_info.__traceback__)
            elif exc_info:
                exc = sys.exc_info()
            code = caller.f_code
            record = logger.makeRecord(
                logger.name, level, code.co_filename, caller.f_lineno, msg, args, exc, code.co_name
            )
            logger.handle(record)
        except Exception:
            if logging.raiseExceptions:  # as logging.Handler.handleError reports
                import traceback

                sys.stderr.write("--- Logging error (graceful_grpc) ---\n")
                traceback.print_exc(file=sys.stderr)
        finally:
            del caller


logger = _Logger("graceful_grpc")
