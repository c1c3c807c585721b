"""One logging format for the gateway and the CLI, level from LOCKGATE_LOG_LEVEL."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    level = os.environ.get("LOCKGATE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
