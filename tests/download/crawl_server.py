"""A fault-injecting image server on 127.0.0.1 for the crawler's tests and benchmark.

Each path is a :class:`Page` of one kind: ``image`` (200 with the body), ``status`` (an error
status), ``html`` (a web page), ``slow`` (stalls before the status line), ``redirect`` (302 to
``location``), ``huge`` (announces and streams a body over any sane cap), ``endless`` (streams with
no Content-Length until the client hangs up), ``trickle`` (sends its headers a byte at a time,
``delay_s`` apart, for up to 8 s), ``reset`` (reads the request, then aborts the TCP
connection with RST) and ``truncated`` (announces N bytes, sends half, closes).

Every request is logged (``server.log``: the paths, in arrival order; ``agents``: the
User-Agent headers seen), so a test can prove which
URLs were fetched and how many times. ``python tests/download/crawl_server.py N [MS]`` serves N
generated images (``/img/000000.png`` ...), each after MS milliseconds, in a separate process (for
the benchmark) and prints its base URL.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Page:
    kind: str = "image"
    body: bytes = b""
    status: int = 200
    content_type: str = ""  # "" = image/png for images, text/html for pages
    delay_s: float = 0.0
    location: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (X-Robots-Tag, ...)


def png_bytes(seed: int, size: int = 8) -> bytes:
    """A small valid PNG whose pixels depend on ``seed`` (distinct seeds give distinct bytes)."""
    import zlib

    width = height = size
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            v = (seed * 7919 + x * 31 + y * 131) & 0xFFFFFF
            raw += bytes(((v >> 16) & 255, (v >> 8) & 255, v & 255))
    raw += struct.pack(">I", seed)  # guarantee distinct compressed bytes

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw), 6))
            + chunk(b"IEND", b""))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.log.append(path)
            self.server.agents.add(self.headers.get("User-Agent", ""))
            self.server.times.append(time.monotonic())
            self.server.inflight += 1
            self.server.max_inflight = max(self.server.max_inflight, self.server.inflight)
        try:
            return self._route(path)
        finally:
            with self.server.lock:
                self.server.inflight -= 1

    def _route(self, path: str) -> None:
        page = self.server.pages.get(path)
        if page is None:
            return self._send(404, b"not found\n", "text/plain")
        if page.delay_s and page.kind != "trickle":
            time.sleep(page.delay_s)
        kind = page.kind
        if kind in ("image", "slow"):
            return self._send(200, page.body, page.content_type or "image/png", page.headers)
        if kind == "status":
            return self._send(page.status, f"status {page.status}\n".encode(), "text/plain", page.headers)
        if kind == "trickle":  # a status line, then headers that never end (each byte on time)
            self.close_connection = True
            head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n" + b"X-Pad: " + b"a" * 10_000
            started = time.monotonic()
            with contextlib.suppress(OSError):
                for i in range(len(head)):
                    if time.monotonic() - started > 8:
                        break
                    self.wfile.write(head[i:i + 1])
                    self.wfile.flush()
                    time.sleep(page.delay_s)
            return None
        if kind == "html":
            return self._send(200, b"<!doctype html><html><body>not an image</body></html>\n",
                              page.content_type or "text/html; charset=utf-8")
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", page.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if kind == "huge":  # an honest but oversized Content-Length
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            return self._stream_until_hangup()
        if kind == "endless":  # no Content-Length: the client must cut it off itself
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return self._stream_until_hangup(png_bytes(1))
        if kind == "reset":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            return None
        if kind == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", page.content_type or "image/png")
            self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            self.wfile.write(page.body[: len(page.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return None
        raise AssertionError(f"unknown page kind {kind!r}")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream_until_hangup(self, head: bytes = b"") -> None:
        block = head + b"\0" * (64 * 1024 - len(head))
        with contextlib.suppress(OSError):
            for _ in range(16 * 1024):  # at most 1 GiB, far beyond any test cap
                self.wfile.write(block)
                block = b"\0" * (64 * 1024)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.pages: dict[str, Page] = {}
        self.log: list[str] = []
        self.agents: set[str] = set()
        self.times: list[float] = []  # arrival time of each request (monotonic)
        self.inflight = self.max_inflight = 0  # requests being answered now, and the most at once
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        pass


class CrawlServer:
    """``with CrawlServer() as srv: url = srv.add("/a.png", Page(body=png_bytes(1)))``."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def log(self) -> list[str]:
        with self._server.lock:
            return list(self._server.log)

    @property
    def agents(self) -> set[str]:
        with self._server.lock:
            return set(self._server.agents)

    def hits(self) -> Counter:
        return Counter(self.log)

    @property
    def max_inflight(self) -> int:
        return self._server.max_inflight

    @property
    def times(self) -> list[float]:
        with self._server.lock:
            return list(self._server.times)

    def add(self, path: str, page: Page) -> str:
        self._server.pages[path] = page
        return self.base_url + path

    def start(self) -> CrawlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CrawlServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_images(count: int, delay_s: float = 0.0) -> CrawlServer:
    srv = CrawlServer()
    for i in range(count):
        srv.add(f"/img/{i:06d}.png", Page(body=png_bytes(i), delay_s=delay_s))
    return srv


if __name__ == "__main__":  # the benchmark's server process: N images, optional latency in ms
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    server = serve_images(n, float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0)
    print(server.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever(poll_interval=0.05)
