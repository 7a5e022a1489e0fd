"""Diagnostic logging (structlog). Called once from the CLI, never at import.

Never log Authorization headers, tokens, secrets or bodies; log sizes instead.
"""

from __future__ import annotations

import logging
import sys

import structlog

from gateway.settings import LoggingSettings

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(settings: LoggingSettings) -> None:
    """Structured logs to stderr, as JSON in production or readable lines in development."""
    level = _LEVELS[settings.level]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info
            if settings.format == "json"
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # At INFO these log every request's full URL, which may carry an upstream's address or key.
    for noisy in ("httpx2", "httpx", "httpcore2", "mcp", "mcp.server", "mcp.client"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
