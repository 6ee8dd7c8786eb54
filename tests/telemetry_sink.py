"""A local stand-in for the error-report (Sentry) and trace (OTLP/HTTP) collectors.

The services run as subprocesses, so their error reports and spans really leave
the process over HTTP; this server receives them and writes every decoded body to
a file, where the scans for keys and canaries look. Sentry envelopes arrive gzip
compressed; OTLP spans as protobuf, whose strings are stored as UTF-8 as they are.
"""

from __future__ import annotations

import gzip
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class TelemetrySink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        counter = itertools.count()
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                kind = "sentry" if "/envelope/" in self.path or "/store/" in self.path else "otlp" if "/v1/traces" in self.path else "other"
                with lock:
                    name = f"{kind}-{next(counter):06d}.bin"
                (sink.directory / name).write_bytes(body)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def sentry_dsn(self) -> str:
        return f"http://carevaulttest@127.0.0.1:{self.port}/1"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def received(self, kind: str) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.directory.glob(f"{kind}-*.bin"))]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self, prefixes: list[str]) -> dict[str, str]:
        """Settings that send every service's error reports and spans here."""
        env: dict[str, str] = {}
        for prefix in prefixes:
            env[prefix + "SENTRY_DSN"] = self.sentry_dsn
            env[prefix + "OTLP_ENDPOINT"] = self.otlp_endpoint
        return env
