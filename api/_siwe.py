"""Sign-In with Ethereum (EIP-4361): a strict parser, the message text, and the verifier.

The ``siwe`` package cannot be installed beside web3 8, so this module implements the standard with
eth-account, eth-utils and the standard library only.

Parsing follows the ABNF of EIP-4361 line by line: the header ``[scheme "://"] domain " wants you to sign in
with your Ethereum account:"``, the address, a blank line, an optional statement line followed by a blank line
(no statement: the address is followed by two blank lines; an *empty* statement: three), then ``URI``,
``Version``, ``Chain ID``, ``Nonce`` and ``Issued At``, then in this order the optional ``Expiration Time``,
``Not Before``, ``Request ID`` and ``Resources:`` with one ``- <URI>`` line per resource. Lines end with LF
only and the message has no trailing LF. Each value is checked against its grammar, transcribed from
RFC 3986 (URIs, authorities, ``pchar``), RFC 3339 (``date-time``) and EIP-4361 (nonce, statement, chain id);
IPv6 literals are checked with :mod:`ipaddress` after a character filter (which refuses zone ids).

:class:`SiweMessage` validates every field in ``__post_init__``, so a message is valid however it was made:
parsed from a wallet's text, or built by the service to issue a challenge. :meth:`SiweMessage.text` renders
the message; for every text the parser accepts, ``parse_message(text).text() == text`` (a parsed message keeps
the spelling of its timestamps: ``Z`` or ``+02:00``, the number of fraction digits).

Deliberate narrowings, each refused as ``malformed`` although the ABNF alone would admit it:

* an address that is not EIP-55 checksummed (the ABNF comment says it must be);
* an empty host in ``domain`` (the domain is REQUIRED and names the origin);
* a chain id with a leading zero or above ``2**256 - 1`` (``01`` and ``1`` would name one chain twice);
* a leap second (``:60``), which :class:`~datetime.datetime` cannot hold.

:func:`verify` parses the text, then checks, in this order: scheme (when the caller names one; a message
without a scheme means ``https``, as the EIP says), domain (exact, port included), chain id, nonce
(constant-time), expiration (``now >= expiration-time`` is expired), not-before (``now < not-before``), and
last the signature, as it is the costly check: EIP-191 ``personal_sign`` recovery, and if that names another
account, the caller's ERC-1271 check. The signature is checked over the text exactly as received.

Every refusal is a :class:`SiweError` (a :class:`~api._errors.SignInFailed`, HTTP 401) whose ``reason`` says
which check failed and whose ``detail`` is one short sentence; signatures are never echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_checksum_address
from eth_utils.exceptions import ValidationError

from api._errors import SignInFailed

__all__ = [
    "SiweError",
    "SiweMessage",
    "SiweReason",
    "parse_message",
    "verify",
]

#: Which check refused a message (the ``reason`` member of the problem).
SiweReason = Literal[
    "malformed", "domain", "chain-id", "nonce", "expired", "not-yet-valid", "signer", "version", "scheme"
]

#: The largest chain id accepted (EIP-155 chain ids are unsigned 256-bit integers).
MAX_CHAIN_ID = 2**256 - 1

_HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"


class SiweError(SignInFailed):
    """A Sign-In with Ethereum message was refused; ``reason`` names the check that failed."""

    def __init__(self, detail: str, reason: SiweReason) -> None:
        super().__init__(detail, reason)
        self.reason: SiweReason = reason


def _malformed(detail: str) -> SiweError:
    return SiweError(detail, "malformed")


# --- grammar (RFC 3986, RFC 3339, EIP-4361); [0-9], not \d, which would admit non-ASCII digits ---

_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT_ENCODED = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT_ENCODED})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"

_SCHEME_RE = re.compile(_SCHEME)
_AUTHORITY_RE = re.compile(
    rf"(?:(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT_ENCODED})*@)?"  # userinfo "@"
    # host = IP-literal / reg-name (an IPv4address is also a reg-name)
    rf"(?P<host>\[(?P<literal>[^\]]*)\]|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT_ENCODED})*)"
    r"(?::[0-9]*)?"  # ":" port
)
_IPV_FUTURE_RE = re.compile(rf"[vV][0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+")
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]+")
_URI_RE = re.compile(
    rf"{_SCHEME}:"
    rf"(?://(?P<authority>[^/?#]*)(?:/{_PCHAR}*)*"  # "//" authority path-abempty
    rf"|/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)"  # path-absolute / path-rootless / path-empty
    rf"(?:\?(?:{_PCHAR}|[/?])*)?"  # "?" query
    rf"(?:#(?:{_PCHAR}|[/?])*)?"  # "#" fragment
)
_STATEMENT_RE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;= ]*")  # *( reserved / unreserved / " " )
_REQUEST_ID_RE = re.compile(rf"{_PCHAR}*")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_CHAIN_ID_RE = re.compile(r"0|[1-9][0-9]{0,77}")
_ADDRESS_RE = re.compile(r"0x[0-9A-Fa-f]{40}")
_DATE_TIME_RE = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)
_SIGNATURE_HEX_RE = re.compile(r"(?:0[xX])?(?:[0-9A-Fa-f]{2})+")


def _preview(value: str, limit: int = 40) -> str:
    """``value`` quoted and cut short, to name an offending value in a detail without echoing a long input."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _is_ipv6(value: str) -> bool:
    # ipaddress would accept a zone id ("fe80::1%eth0"); RFC 3986 does not
    if _IPV6_CHARS_RE.fullmatch(value) is None:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _check_authority(value: str, what: str, *, require_host: bool) -> None:
    match = _AUTHORITY_RE.fullmatch(value)
    if match is None:
        raise _malformed(f"The {what} {_preview(value)} is not an RFC 3986 authority.")
    literal = match["literal"]
    if literal is not None and _IPV_FUTURE_RE.fullmatch(literal) is None and not _is_ipv6(literal):
        raise _malformed(f"The {what} {_preview(value)} holds an invalid IP literal.")
    if require_host and not match["host"]:
        raise _malformed(f"The {what} {_preview(value)} has no host.")


def _check_uri(value: str, what: str) -> None:
    match = _URI_RE.fullmatch(value)
    if match is None:
        raise _malformed(f"The {what} {_preview(value)} is not an RFC 3986 URI.")
    if match["authority"] is not None:
        _check_authority(match["authority"], what, require_host=False)


def _parse_time(value: str, what: str) -> datetime:
    """An RFC 3339 ``date-time``: an aware datetime in the offset written, cut to microseconds."""
    match = _DATE_TIME_RE.fullmatch(value)
    if match is None:
        raise _malformed(f"The {what} {_preview(value)} is not an RFC 3339 date-time.")
    if match["second"] == "60":
        raise _malformed(f"The {what} {_preview(value)} is a leap second, which is not supported.")
    offset = timedelta(0)
    if match["sign"] is not None:
        off_hour, off_minute = int(match["off_hour"]), int(match["off_minute"])
        if off_hour > 23 or off_minute > 59:
            raise _malformed(f"The {what} {_preview(value)} has an invalid UTC offset.")
        offset = timedelta(hours=off_hour, minutes=off_minute) * (-1 if match["sign"] == "-" else 1)
    fraction = match["fraction"] or ""
    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            int((fraction + "000000")[:6]),
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise _malformed(f"The {what} {_preview(value)} is not a valid date and time.") from None


def _format_time(value: datetime) -> str:
    """The canonical spelling of an aware datetime: ``Z`` for UTC, fraction digits only when needed."""
    offset = value.utcoffset()
    assert offset is not None  # checked in SiweMessage.__post_init__
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond % 1000 == 0:
        text += f".{value.microsecond // 1000:03d}" if value.microsecond else ""
    else:
        text += f".{value.microsecond:06d}"
    if not offset:
        return text + "Z"
    minutes = abs(offset) // timedelta(minutes=1)
    return text + f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


def _check_time(value: datetime, what: str) -> None:
    offset = value.utcoffset()
    if offset is None:
        raise _malformed(f"The {what} must be timezone-aware.")
    if offset % timedelta(minutes=1):
        raise _malformed(f"The {what} has a UTC offset that is not a whole number of minutes.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SiweMessage:
    """One EIP-4361 message; every field is validated on construction (:class:`SiweError` ``malformed``)."""

    #: RFC 3986 authority of the origin asking for the signature (host, optional userinfo and port)
    domain: str
    #: the signing account, EIP-55 checksummed exactly as in the message
    address: str
    #: the human-readable line; None: no statement line; "": an empty statement line
    statement: str | None = None
    #: RFC 3986 URI, the subject of the signing
    uri: str
    #: always "1"
    version: str = "1"
    #: EIP-155 chain id the session is bound to
    chain_id: int
    #: at least 8 letters or digits, chosen by the relying party
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    #: RFC 3986 ``*pchar``; None: no ``Request ID`` line
    request_id: str | None = None
    #: RFC 3986 URIs, in order
    resources: tuple[str, ...] = ()
    #: RFC 3986 scheme written before the domain (``https://example.com wants you...``); None: none written
    scheme: str | None = None
    #: True when the message has a bare ``Resources:`` line with no resource (the ABNF allows it)
    empty_resources: bool = False
    #: how a parsed message spelled its timestamps; :meth:`text` reuses a spelling only for its own value
    timestamp_spellings: tuple[tuple[datetime, str], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.resources, tuple):
            object.__setattr__(self, "resources", tuple(self.resources))
        if self.scheme is not None and _SCHEME_RE.fullmatch(self.scheme) is None:
            raise _malformed(f"The scheme {_preview(self.scheme)} is not an RFC 3986 scheme.")
        _check_authority(self.domain, "domain", require_host=True)
        if _ADDRESS_RE.fullmatch(self.address) is None:
            raise _malformed(f"The address {_preview(self.address)} is not 0x and 40 hexadecimal digits.")
        if not is_checksum_address(self.address):
            raise _malformed(f"The address {self.address} is not EIP-55 checksummed.")
        if self.statement is not None and _STATEMENT_RE.fullmatch(self.statement) is None:
            raise _malformed(
                "The statement holds a character outside RFC 3986 reserved / unreserved / space."
            )
        _check_uri(self.uri, "URI")
        if self.version != "1":
            raise SiweError(
                f"SIWE version {_preview(self.version)} is not supported; only version 1 exists.", "version"
            )
        if type(self.chain_id) is not int or not 0 <= self.chain_id <= MAX_CHAIN_ID:
            raise _malformed(f"The chain id {self.chain_id!r} is not an integer from 0 to 2**256 - 1.")
        if _NONCE_RE.fullmatch(self.nonce) is None:
            raise _malformed("The nonce must be at least 8 letters or digits.")
        _check_time(self.issued_at, "issued-at time")
        if self.expiration_time is not None:
            _check_time(self.expiration_time, "expiration time")
        if self.not_before is not None:
            _check_time(self.not_before, "not-before time")
        if self.request_id is not None and _REQUEST_ID_RE.fullmatch(self.request_id) is None:
            raise _malformed(
                f"The request id {_preview(self.request_id)} holds a character outside RFC 3986 pchar."
            )
        for resource in self.resources:
            _check_uri(resource, "resource")
        if self.empty_resources and self.resources:
            raise _malformed("empty_resources is set but the message lists resources.")

    def _spell(self, value: datetime) -> str:
        for spelled, text in self.timestamp_spellings:
            if spelled == value and spelled.utcoffset() == value.utcoffset():
                return text
        return _format_time(value)

    def text(self) -> str:
        """The EIP-4361 text of this message: what the wallet shows and signs."""
        origin = f"{self.scheme}://{self.domain}" if self.scheme is not None else self.domain
        lines = [origin + _HEADER_SUFFIX, self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {self._spell(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {self._spell(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {self._spell(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources or self.empty_resources:
            lines.append("Resources:")
            lines += [f"- {resource}" for resource in self.resources]
        return "\n".join(lines)


class _Lines:
    """A cursor over the message's lines, for the parser."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self.index = 0

    def peek(self, ahead: int = 0) -> str | None:
        """The line ``ahead`` lines after the cursor, or None past the end."""
        at = self.index + ahead
        return self._lines[at] if at < len(self._lines) else None

    def take(self, prefix: str, what: str) -> str:
        """The rest of the next line, which must start with ``prefix``."""
        line = self.peek()
        if line is None:
            raise _malformed(f"The message ends where the {what} line (line {self.index + 1}) belongs.")
        if not line.startswith(prefix):
            raise _malformed(
                f"Line {self.index + 1} should be the {what} line {prefix!r}, not {_preview(line)}."
            )
        self.index += 1
        return line[len(prefix) :]

    def take_optional(self, prefix: str) -> str | None:
        """The rest of the next line if it starts with ``prefix``; else None, and the cursor stays."""
        line = self.peek()
        if line is None or not line.startswith(prefix):
            return None
        self.index += 1
        return line[len(prefix) :]

    def blank(self, what: str) -> None:
        line = self.peek()
        if line is None:
            raise _malformed(f"The message ends where the empty line {what} (line {self.index + 1}) belongs.")
        if line:
            raise _malformed(f"Line {self.index + 1} should be empty ({what}), not {_preview(line)}.")
        self.index += 1


def parse_message(text: str) -> SiweMessage:
    """Parse an EIP-4361 message, strictly.

    Raises :class:`SiweError` with reason ``malformed`` (the detail names the offending line or field), or
    ``version`` for a message of a version other than 1.
    """
    lines = _Lines(text)
    header = lines.take("", "header")
    if not header.endswith(_HEADER_SUFFIX):
        raise _malformed(f"Line 1 should end with {_HEADER_SUFFIX.strip()!r}.")
    origin = header[: -len(_HEADER_SUFFIX)]
    scheme: str | None
    scheme, separator, domain = origin.partition("://")
    if not separator:
        scheme, domain = None, origin
    address = lines.take("", "address")
    lines.blank("after the address")
    # No statement: a second empty line, then the URI line. Else the next line is the (maybe empty) statement.
    following = lines.peek(1)
    no_statement = lines.peek() == "" and following is not None and following.startswith("URI: ")
    statement = None if no_statement else lines.take("", "statement")
    lines.blank("before the URI")
    uri = lines.take("URI: ", "URI")
    version = lines.take("Version: ", "version")
    chain_id_text = lines.take("Chain ID: ", "chain id")
    nonce = lines.take("Nonce: ", "nonce")
    issued_at_text = lines.take("Issued At: ", "issued-at")
    expiration_text = lines.take_optional("Expiration Time: ")
    not_before_text = lines.take_optional("Not Before: ")
    request_id = lines.take_optional("Request ID: ")
    has_resources = lines.peek() == "Resources:"
    resources: list[str] = []
    if has_resources:
        lines.index += 1
        while lines.peek() is not None:
            resources.append(lines.take("- ", "resource"))
    if (extra := lines.peek()) is not None:
        raise _malformed(f"Line {lines.index + 1} is out of place or unknown: {_preview(extra)}.")

    if _CHAIN_ID_RE.fullmatch(chain_id_text) is None or int(chain_id_text) > MAX_CHAIN_ID:
        raise _malformed(
            f"The chain id {_preview(chain_id_text)} is not a decimal integer up to 2**256 - 1 "
            "without leading zeros."
        )
    spellings: list[tuple[datetime, str]] = []

    def timestamp(value: str, what: str) -> datetime:
        parsed = _parse_time(value, what)
        spellings.append((parsed, value))
        return parsed

    issued_at = timestamp(issued_at_text, "issued-at time")
    expiration_time = None if expiration_text is None else timestamp(expiration_text, "expiration time")
    not_before = None if not_before_text is None else timestamp(not_before_text, "not-before time")
    return SiweMessage(
        domain=domain,
        address=address,
        statement=statement,
        uri=uri,
        version=version,
        chain_id=int(chain_id_text),
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=tuple(resources),
        scheme=scheme,
        empty_resources=has_resources and not resources,
        timestamp_spellings=tuple(spellings),
    )


def _signature_bytes(signature: bytes | str) -> bytes:
    if isinstance(signature, bytes | bytearray):
        raw = bytes(signature)
    elif _SIGNATURE_HEX_RE.fullmatch(signature):
        raw = bytes.fromhex(signature[2:] if signature[:2] in ("0x", "0X") else signature)
    else:
        raise SiweError("The signature is not hexadecimal bytes.", "signer")
    if not raw:
        raise SiweError("The signature is empty.", "signer")
    return raw


def _recover(message_text: str, signature: bytes) -> str | None:
    """The account whose EIP-191 ``personal_sign`` signature this is, or None if it is not one."""
    if len(signature) != 65:
        return None
    try:
        return str(Account.recover_message(encode_defunct(text=message_text), signature=signature))
    except (BadSignature, ValidationError, ValueError):
        return None


def verify(
    message_text: str,
    signature: bytes | str,
    *,
    domain: str,
    chain_id: int,
    nonce: str,
    now: datetime,
    scheme: str | None = None,
    is_valid_erc1271: Callable[[str, bytes, bytes], bool] | None = None,
) -> SiweMessage:
    """Verify a signed EIP-4361 message against what the relying party expects; return the parsed message.

    ``domain`` must equal the message's domain exactly (port included), ``chain_id`` and ``nonce`` likewise;
    ``scheme``, when given, must equal the message's scheme (``https`` when the message names none). At
    ``now`` (timezone-aware) the message must not have expired nor be before its not-before time. The
    signature must be the address's EIP-191 ``personal_sign`` signature of ``message_text``; if it is not and
    ``is_valid_erc1271`` is given, that callback decides, called as ``(address, eip191_hash, signature)``
    (it implements ERC-1271 ``isValidSignature`` on the chain; its errors propagate).

    Raises :class:`SiweError`; ``reason`` is the first check that failed, in the order above.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    message = parse_message(message_text)
    if scheme is not None and (message.scheme or "https").lower() != scheme.lower():
        raise SiweError(f"The message is for scheme {message.scheme or 'https'!r}, not {scheme!r}.", "scheme")
    if message.domain != domain:
        raise SiweError(f"The message is for domain {_preview(message.domain)}, not {domain!r}.", "domain")
    if message.chain_id != chain_id:
        raise SiweError(f"The message is for chain {message.chain_id}, not {chain_id}.", "chain-id")
    if not hmac.compare_digest(message.nonce.encode(), nonce.encode()):
        raise SiweError("The message's nonce is not the one issued.", "nonce")
    if message.expiration_time is not None and now >= message.expiration_time:
        raise SiweError(f"The message expired at {_format_time(message.expiration_time)}.", "expired")
    if message.not_before is not None and now < message.not_before:
        raise SiweError(
            f"The message is not valid before {_format_time(message.not_before)}.", "not-yet-valid"
        )
    raw = _signature_bytes(signature)
    if _recover(message_text, raw) == message.address:
        return message
    if is_valid_erc1271 is not None and is_valid_erc1271(
        message.address, bytes(defunct_hash_message(text=message_text)), raw
    ):
        return message
    raise SiweError(f"The signature is not {message.address}'s signature of this message.", "signer")
