"""Logs: JSON lines in production, readable text in development; each line of a request carries its id,
and no line carries a secret.

Why stdlib ``logging`` and not a structured-logging library: every module already logs through it with
``%``-style arguments (``logger.info("transaction 0x%s: %s", tx_hash, result)``), uvicorn and the
libraries do too, and a formatter is all it takes to turn those records into JSON objects. So nothing that
logs changes; :func:`configure_logging` (or :func:`logging_config` handed to uvicorn) decides the shape:

- ``LOYALTY_LOG_FORMAT=json`` (the default in production mode): one JSON object per line, with ``time``
  (UTC, ISO 8601), ``level``, ``logger``, ``message`` (the formatted message: tx hashes, block numbers and
  operation ids the code passes as arguments are in it), ``request_id`` while a request is served,
  ``thread``, ``exception`` when there is one, and any ``extra={...}`` fields as they were given;
- ``text`` (the default in dev mode): ``time level logger [request id]: message``.

**Request ids.** :class:`~api._app.RequestIdMiddleware` runs each request inside :func:`request_context`,
which sets a context variable; the routes' threads inherit it (anyio copies the context into the thread
that runs a sync route), and :class:`RequestIdFilter` puts it on every record made meanwhile.

**Secrets.** :class:`RedactingFilter` sits on every handler and rewrites each record before any formatter
sees it: the message, its arguments, the traceback and the extra fields. It masks (:func:`redact`)

- API keys and session tokens (``lpk_<id>_<secret>``, ``lps_<id>_<secret>``: the public id stays, so the
  line still says which key), webhook secrets (``whsec_...``) and any other ``Bearer`` credential;
- the value of anything labelled ``password``, ``passphrase``, ``secret``, ``token``, ``authorization``,
  ``private_key``, ``api_key``, ``seed`` or ``mnemonic`` (``password=...``, ``"token": "..."``, a dict
  argument's key, an ``extra`` field's name);
- every 32-byte hex string (``0x`` and 64 hex digits, or the digits alone; raw 32-byte arguments too):
  the shape of a private key. A transaction hash has the same shape, and the logs need those: one is kept
  when the words just before it in the message (or the ``extra`` field's name) say what it is
  (``transaction``, ``tx``, ``hash``, ``receipt``, ``block``, ``batch``, ``operation``, ``entry``,
  ``root``, ``ref``, ``head``) and nothing there speaks of a key, a secret, a seed or a password. So
  ``transaction 0x<hash>: reverted`` and ``operation 7 was already done (0x<hash>)`` stay readable, and a
  key logged bare, or next to the word key, does not. That is why the whole formatted message is scanned,
  not each argument alone: an argument has no words around it.

What it cannot know is a secret with no shape and no label (a password in free text): that is never to be
logged in the first place. A handler added beside these (a test's log capture) sees records as they were
logged if it comes first: redaction is the handlers' job, so every handler of the service is made by
:func:`logging_config` or :func:`log_handler`.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any, Final, Literal

from ._settings import Settings

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "RequestIdFilter",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "log_format",
    "log_handler",
    "logging_config",
    "redact",
    "request_context",
]

REDACTED: Final = "[REDACTED]"

_REQUEST_ID: ContextVar[str | None] = ContextVar("loyalty_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context (None outside a request)."""
    return _REQUEST_ID.get()


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Every record logged inside the block (and in threads started from it) carries ``request_id``."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


# --------------------------------------------------------------------------- redaction

_SECRET_WORDS = (
    r"pass(?:word|phrase|wd)?|secret|token|authori[sz]ation|private[_-]?key|api[_-]?key|seed|mnemonic"
)
#: A field (an ``extra`` name, a dict key) whose value is a secret, whatever it looks like.
_SECRET_FIELD = re.compile(_SECRET_WORDS, re.IGNORECASE)
#: Words before a 32-byte hex string that say it is a hash, not a key ...
_HASH_CONTEXT = re.compile(
    r"\b(?:transactions?|txs?|tx_hash|hash(?:es)?|receipts?|blocks?|batch(?:es)?|operations?|entry|entries|"
    r"root|ref|head)\b",
    re.IGNORECASE,
)
#: ... unless these speak of a key (a private key next to a transaction hash stays masked).
_KEY_CONTEXT = re.compile(r"key|secret|seed|mnemonic|pass", re.IGNORECASE)
#: How far before a 32-byte hex string its context words are looked for.
_CONTEXT_CHARS = 48

_SHAPES = re.compile(
    # a labelled value: password=..., "token": "...", Authorization: Bearer ...
    r"(?P<label>[\"']?(?<![\w-])[\w-]{0,32}?(?:" + _SECRET_WORDS + r")[\w-]{0,32}[\"']?\s*[:=]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|(?:(?:Bearer|Basic)\s+)?[^\s,;)}\]]+)"
    # the service's own tokens: the public id is kept
    r"|(?P<token>\b(?P<prefix>lpk|lps)_(?P<id>[0-9a-f]{12})_[A-Za-z0-9_-]{16,})"
    r"|(?P<loose>\b(?:lpk|lps|whsec)_[A-Za-z0-9_+/=-]{8,})"
    r"|(?P<bearer>\bBearer\s+)(?!lp[ks]_)[^\s'\",;]+"
    r"|(?P<hex>(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z]))",
    re.IGNORECASE,
)


def _mask(match: re.Match[str], context: str) -> str:
    if match["label"] is not None:
        value = match["value"]
        quote = value[0] if value[:1] in ("'", '"') else ""
        return f"{match['label']}{quote}{REDACTED}{quote}"
    if match["token"] is not None:
        return f"{match['prefix']}_{match['id']}_{REDACTED}"
    if match["loose"] is not None:
        if match.string.startswith(REDACTED, match.end()):  # masked already: redact() is idempotent
            return match[0]
        return match["loose"].split("_", 1)[0] + "_" + REDACTED
    if match["bearer"] is not None:
        return match["bearer"] + REDACTED
    before = (context + match.string[: match.start()])[-_CONTEXT_CHARS:]
    if _HASH_CONTEXT.search(before) and not _KEY_CONTEXT.search(before):
        return match[0]
    return REDACTED


def redact(text: str, context: str = "") -> str:
    """``text`` with every secret-shaped part masked (see the module docstring); ``context``: what stands
    before the text (a field's name), for telling a hash from a key."""
    return _SHAPES.sub(lambda match: _mask(match, context), text)


def _argument(value: Any) -> Any:
    """A log argument with what the formatted message cannot show masked, keeping its type (``%d`` and
    ``%r`` still format it): a mapping loses the values of its secret-named keys (a ``%(password)s``
    message shows no name), raw 32 bytes (a key's size) go; strings are left to the scan of the whole
    message, where the words around them tell a transaction hash from a key."""
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_FIELD.search(k) else _argument(v)
            for k, v in value.items()
        }
    return value


def _field(name: str, value: Any) -> Any:
    """An ``extra`` field (or an item of one) with the secrets in it masked: a secret-named one entirely,
    strings scanned with the field's name as their context (``tx_hash`` keeps a hash)."""
    if _SECRET_FIELD.search(name) or (isinstance(value, bytes | bytearray) and len(value) == 32):
        return REDACTED
    if isinstance(value, str):
        return redact(value, context=f"{name} ")
    if isinstance(value, Mapping):
        return {k: _field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_field(name, v) for v in value]
    return value


#: The attributes every LogRecord has; anything else on a record came from ``extra={...}``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    """Masks secrets in a record before any formatter sees it (put it on every handler): the message is
    formatted with its arguments here and replaced by its redacted text, the traceback is formatted and
    redacted, and secret-named ``extra`` fields lose their values."""

    _exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        args = record.args
        if isinstance(args, Mapping):
            record.args = _argument(args)
        elif isinstance(args, tuple):
            record.args = tuple(_argument(a) for a in args)
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: show both, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in _extras(record).items():
            setattr(record, key, _field(key, value))
        setattr(record, "_redacted", True)  # noqa: B010 - a mark of ours on a stdlib record
        return True


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on the record (``request_id``; None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            setattr(record, "request_id", _REQUEST_ID.get())  # noqa: B010
        return True


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            out["request_id"] = request_id
        out["thread"] = record.threadName
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        for key, value in _extras(record).items():
            out.setdefault(key, value)
        return json.dumps(out, default=lambda o: redact(str(o)), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request id]: message``, for a person reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(request)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        setattr(record, "request", f" [{request_id}]" if request_id else "")  # noqa: B010
        return super().format(record)


LogFormat = Literal["json", "text"]


def log_format(settings: Settings) -> LogFormat:
    """``settings.log_format``, else JSON in production mode and text in dev mode."""
    if settings.log_format is not None:
        return settings.log_format
    return "json" if settings.mode == "production" else "text"


def log_handler(fmt: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing ``fmt`` lines to ``stream`` (standard error by default) with the request-id and
    redacting filters: what :func:`logging_config` puts on the root logger."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def logging_config(settings: Settings, *, level: int | str = logging.INFO) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: one handler on standard error with the redacting
    and request-id filters and the chosen formatter, on the root logger; uvicorn's loggers propagate to it.

    Hand it to uvicorn as ``log_config`` (uvicorn applies it in each worker process it starts); uvicorn's
    own access lines are turned off, since the service writes one per request itself (``api.access``,
    with the request id, the route and the duration)."""
    formatter = JsonFormatter if log_format(settings) == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": RedactingFilter},
            "request_id": {"()": RequestIdFilter},
        },
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_id", "redact"],
                "formatter": "default",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": logging.WARNING, "handlers": [], "propagate": False},
            # httpx logs every request's URL at INFO (a webhook's URL is the partner's, not ours to log)
            "httpx": {"level": logging.WARNING},
            "httpcore": {"level": logging.WARNING},
        },
    }


def configure_logging(settings: Settings, *, level: int | str = logging.INFO) -> None:
    """Sets up this process's logging as :func:`logging_config` says (call it once, at start-up)."""
    logging.config.dictConfig(logging_config(settings, level=level))
