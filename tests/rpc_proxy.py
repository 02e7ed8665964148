"""A fault-injecting JSON-RPC proxy: sits in front of a real node and spoils the requests it is told to.

Faults are taken from a queue, one per request (``"pass"`` when the queue is empty)::

    429        answer HTTP 429 Too Many Requests
    503        answer HTTP 503 Service Unavailable
    reset      close the connection without answering
    truncate   forward, then send only the first half of the node's answer
    delay:S    forward after sleeping S seconds (a client timeout shorter than S sees a timeout)
    rpc:C:M    answer a JSON-RPC error with code C and message M (for every request of a batch)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: deque[str] = deque()
        self.requests = 0
        self.methods: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._next(body)
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault in ("429", "503"):
                    self.send_response(int(fault))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault.startswith("rpc:"):
                    _, code, message = fault.split(":", 2)
                    payload = json.loads(body)
                    answer = (
                        [_error(r, int(code), message) for r in payload]
                        if isinstance(payload, list)
                        else _error(payload, int(code), message)
                    )
                    self._reply(json.dumps(answer).encode())
                    return
                if fault.startswith("delay:"):
                    time.sleep(float(fault.split(":", 1)[1]))
                answer = requests.post(
                    proxy.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=30
                ).content
                if fault == "truncate":
                    answer = answer[: len(answer) // 2]
                self._reply(answer)

            def _reply(self, answer: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _next(self, body: bytes) -> str:
        with self._lock:
            self.requests += 1
            try:
                payload = json.loads(body)
                calls = payload if isinstance(payload, list) else [payload]
                self.methods.extend(str(c.get("method")) for c in calls)
            except ValueError:
                pass
            return self.faults.popleft() if self.faults else "pass"

    def inject(self, faults: Iterable[str]) -> None:
        with self._lock:
            self.faults.extend(faults)

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()


def _error(request: dict[str, Any], code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": code, "message": message}}
