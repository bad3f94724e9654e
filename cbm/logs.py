"""Configure logging once per process: plain lines, or one JSON object per line."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object (for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure(level: str = "INFO", *, json: bool = False) -> None:
    """Send the root logger to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paho logs every packet at DEBUG through its own logger when asked; keep it quiet.
    logging.getLogger("paho").setLevel(logging.WARNING)
