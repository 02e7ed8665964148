"""A fault-injecting JSON-RPC proxy: sits in front of a real node and spoils the requests it is told to.

Faults are taken from queues, one per HTTP request (``"pass"`` when no queue has one). ``inject(faults)``
fills the queue every request draws from; ``inject(faults, method="eth_getLogs")`` fills one that only
requests calling that method draw from (a batch does when any of its calls does), before the shared one::

    pass       forward untouched
    429, 503   answer that HTTP status with an empty body (any status: "413", "502", ...)
    reset      close the connection without answering
    truncate   forward, then send only the first half of the node's answer
    delay:S    forward after sleeping S seconds (a client timeout shorter than S sees a timeout; a proxy
               that shuts down stops the sleep and answers nothing)
    rpc:C:M    answer a JSON-RPC error with code C and message M (for every request of a batch)
    oversized  Alchemy's refusal of a too-large eth_getLogs answer, without a suggested range:
               JSON-RPC error -32602 "Log response size exceeded." (for every request of a batch)
    stale      forward, then answer every eth_getLogs in it with no logs, as a load-balanced backend that
               is behind the others does for blocks it does not have yet

Standing limits, like a hosted node's, on every ``eth_getLogs`` (alone or in a batch) the proxy forwards:

    max_log_range = N     a range of more than N blocks is refused with a JSON-RPC error worded as
                          ``range_error`` says: "infura" (the default) is -32005 "query returned more than
                          10000 results. Try with this block range [0xA, 0xB]." (the range's first N
                          blocks); "plain" is -32602 "block range too large" (no suggestion)
    state_horizon = N     a pruned node: eth_call, eth_getProof, eth_getBalance, eth_getStorageAt and
                          eth_getCode at a block more than N below the head get geth's -32000 "missing trie
                          node ..."
    max_log_results = N   an answer of more than N logs is replaced by Alchemy's -32602 "Log response size
                          exceeded. ... this block range should work: [0xA, 0xB]" (the blocks before the
                          one holding log N+1; no suggestion when that block alone holds more than N)

A node that does not answer (stopped, restarting) is answered with HTTP 502.

Counters: ``requests`` (HTTP requests), ``methods`` (every call, batches flattened), ``hits`` (how often
each kind of fault or limit was applied: "429", "reset", "truncate", "delay", "rpc", "oversized", "stale",
"range-limit", "result-limit", "upstream-down", ...) and ``log_ranges`` (the ``(from, to)`` of every
``eth_getLogs`` the node answered and the client was sent untouched).
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

INFURA_RANGE = "query returned more than 10000 results. Try with this block range [{low:#x}, {high:#x}]."
PLAIN_RANGE = "block range too large"
ALCHEMY_SIZE = "Log response size exceeded."
ALCHEMY_SIZE_SUGGESTING = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit "
    "on the response size, or you can request any block range with a cap of 10K logs in the response. "
    "Based on your parameters, this block range should work: [{low:#x}, {high:#x}]"
)

#: Calls that read state at a block, refused beyond a pruned node's horizon (``state_horizon``).
STATE_METHODS = frozenset({"eth_call", "eth_getProof", "eth_getBalance", "eth_getStorageAt", "eth_getCode"})
PRUNED = "missing trie node 0x{block:064x} (path ) state is not available"


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: deque[str] = deque()
        self.method_faults: dict[str, deque[str]] = {}
        self.requests = 0
        self.methods: list[str] = []
        self.hits: Counter[str] = Counter()
        self.log_ranges: list[tuple[int, int]] = []
        #: Standing ``eth_getLogs`` limits (see the module docstring); ``None``: no limit.
        self.max_log_range: int | None = None
        self.range_error = "infura"
        self.max_log_results: int | None = None
        #: A pruned node's horizon: state (``STATE_METHODS``) at a block more than N blocks below the head
        #: is refused as geth refuses it; ``None``: an archive node.
        self.state_horizon: int | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = _json(body)
                fault = proxy._next(payload)
                if fault == "reset":
                    proxy._hit("reset")
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault.isdigit():
                    proxy._hit(fault)
                    self._status(int(fault))
                    return
                if fault.startswith("rpc:") or fault == "oversized":
                    code, message = (-32602, ALCHEMY_SIZE) if fault == "oversized" else _code_message(fault)
                    proxy._hit("oversized" if fault == "oversized" else "rpc")
                    calls = payload if isinstance(payload, list) else [payload]
                    answer = [_error(c, code, message) for c in calls]
                    self._reply(json.dumps(answer if isinstance(payload, list) else answer[0]).encode())
                    return
                if fault.startswith("delay:"):
                    proxy._hit("delay")
                    if proxy._closing.wait(float(fault.split(":", 1)[1])):
                        return
                try:
                    answer = proxy._forward(body, payload, untouched=fault == "pass")
                except requests.RequestException:
                    proxy._hit("upstream-down")
                    self._status(502)
                    return
                if fault == "truncate":
                    proxy._hit("truncate")
                    answer = answer[: len(answer) // 2]
                elif fault == "stale":
                    proxy._hit("stale")
                    answer = _without_logs(payload, answer)
                self._reply(answer)

            def _status(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _reply(self, answer: bytes) -> None:
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ faults

    def inject(self, faults: str | Iterable[str], *, method: str | None = None) -> None:
        """Queues ``faults`` (one, or many in order) for the next requests, or the next requests that call
        ``method``."""
        items = [faults] if isinstance(faults, str) else list(faults)
        with self._lock:
            if method is None:
                self.faults.extend(items)
            else:
                self.method_faults.setdefault(method, deque()).extend(items)

    def pending(self, method: str | None = None) -> int:
        """How many faults are still queued (for every request, or for ``method``)."""
        with self._lock:
            return len(self.faults if method is None else self.method_faults.get(method, ()))

    def _next(self, payload: Any) -> str:
        calls = payload if isinstance(payload, list) else [payload]
        names = [str(c.get("method")) for c in calls if isinstance(c, dict)]
        with self._lock:
            self.requests += 1
            self.methods.extend(names)
            for name in names:
                queue = self.method_faults.get(name)
                if queue:
                    return queue.popleft()
            return self.faults.popleft() if self.faults else "pass"

    def _hit(self, kind: str) -> None:
        with self._lock:
            self.hits[kind] += 1

    # ------------------------------------------------------------------ forwarding, with standing limits

    def _post(self, body: bytes) -> bytes:
        return requests.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=30
        ).content

    def _forward(self, body: bytes, payload: Any, *, untouched: bool) -> bytes:
        calls = payload if isinstance(payload, list) else [payload]
        refused = {
            i: e
            for i, c in enumerate(calls)
            if (e := self._range_refusal(c) or self._state_refusal(c)) is not None
        }
        if not refused and not any(isinstance(c, dict) and c.get("method") == "eth_getLogs" for c in calls):
            return self._post(body)
        rest = [c for i, c in enumerate(calls) if i not in refused]
        answers: dict[Any, Any] = {}
        if rest:
            if not refused:
                raw = self._post(body)
            else:
                raw = self._post(json.dumps(rest if isinstance(payload, list) else rest[0]).encode())
            decoded = _json(raw)
            if decoded is None:  # not JSON: hand it over as it came
                return raw
            for answer in decoded if isinstance(decoded, list) else [decoded]:
                answers[answer.get("id")] = answer
        out = []
        for i, call in enumerate(calls):
            answer = refused.get(i) or answers.get(call.get("id"))
            if call.get("method") == "eth_getLogs" and answer is not None and "result" in answer:
                answer = self._result_refusal(call, answer) or answer
                if "result" in answer and untouched:
                    with self._lock:
                        self.log_ranges.append(_range(call))  # type: ignore[arg-type]
            out.append(answer)
        return json.dumps(out if isinstance(payload, list) else out[0]).encode()

    def _range_refusal(self, call: Any) -> dict[str, Any] | None:
        limit = self.max_log_range
        if limit is None or not isinstance(call, dict) or call.get("method") != "eth_getLogs":
            return None
        bounds = _range(call)
        if bounds is None or bounds[1] - bounds[0] + 1 <= limit:
            return None
        self._hit("range-limit")
        if self.range_error == "plain":
            return _error(call, -32602, PLAIN_RANGE)
        return _error(call, -32005, INFURA_RANGE.format(low=bounds[0], high=bounds[0] + limit - 1))

    def _state_refusal(self, call: Any) -> dict[str, Any] | None:
        horizon = self.state_horizon
        if horizon is None or not isinstance(call, dict) or call.get("method") not in STATE_METHODS:
            return None
        params = call.get("params") or []
        tag = params[-1] if params else "latest"
        if isinstance(tag, dict):  # EIP-1898: {"blockNumber": ...} or {"blockHash": ...}
            tag = tag.get("blockNumber", "latest")
        if not isinstance(tag, str) or not tag.startswith("0x"):
            return None
        head = int(
            _json(self._post(b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'))["result"],
            16,
        )
        if int(tag, 16) >= head - horizon:
            return None
        self._hit("pruned")
        return _error(call, -32000, PRUNED.format(block=int(tag, 16)))

    def _result_refusal(self, call: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any] | None:
        limit = self.max_log_results
        logs = answer["result"]
        if limit is None or not isinstance(logs, list) or len(logs) <= limit:
            return None
        self._hit("result-limit")
        bounds = _range(call)
        cut = int(logs[limit]["blockNumber"], 16)
        if bounds is None or cut - 1 < bounds[0]:
            return _error(call, -32602, ALCHEMY_SIZE)
        return _error(call, -32602, ALCHEMY_SIZE_SUGGESTING.format(low=bounds[0], high=cut - 1))

    # ------------------------------------------------------------------ lifecycle

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._closing.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _without_logs(payload: Any, answer: bytes) -> bytes:
    calls = payload if isinstance(payload, list) else [payload]
    decoded = _json(answer)
    answers = decoded if isinstance(decoded, list) else [decoded]
    getlogs = {c.get("id") for c in calls if isinstance(c, dict) and c.get("method") == "eth_getLogs"}
    for a in answers:
        if isinstance(a, dict) and a.get("id") in getlogs and isinstance(a.get("result"), list):
            a["result"] = []
    return json.dumps(decoded).encode()


def _code_message(fault: str) -> tuple[int, str]:
    _, code, message = fault.split(":", 2)
    return int(code), message


def _range(call: dict[str, Any]) -> tuple[int, int] | None:
    """The numeric ``(fromBlock, toBlock)`` of an ``eth_getLogs`` call (``None`` for tags or a block hash)."""
    params = call.get("params") or [{}]
    query = params[0] if isinstance(params[0], dict) else {}
    low, high = query.get("fromBlock"), query.get("toBlock")
    if not (
        isinstance(low, str) and isinstance(high, str) and low.startswith("0x") and high.startswith("0x")
    ):
        return None
    return int(low, 16), int(high, 16)


def _error(request: Any, code: int, message: str) -> dict[str, Any]:
    ident = request.get("id") if isinstance(request, dict) else None
    return {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}
