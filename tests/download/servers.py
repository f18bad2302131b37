"""Real servers on 127.0.0.1 for the acquisition tests and the download benchmark.

``LoopbackHTTPServer`` is a threaded ``http.server`` whose routes carry switchable fault modes
(drop the connection part way, ignore Range, fail with a status N times, stall before the
headers, trickle the body, redirect). ``MotoS3Server`` runs ``python -m moto.server`` as a
subprocess. No HTTP client is mocked anywhere: the code under test talks to these over sockets.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAST_BACKOFF = 0.01  # seconds of first retry delay in tests; the real default is 1 s, doubling
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Route:
    body: bytes | Path
    status: int = 200  # served `fail_times` times before the body (-1: always)
    fail_times: int = 0
    drop_after: int | None = None  # close the connection after this many body bytes...
    drops: int = 1  # ...on this many requests
    ranges: bool = True  # honour Range requests
    delay_s: float = 0.0  # stall before sending the status line (every request)
    trickle_s: float = 0.0  # pause between body chunks
    chunk: int = 64 * 1024
    redirect_to: str | None = None
    etag: str | None = '"v1"'
    requests: list[str | None] = field(default_factory=list)  # the Range header of each request

    def size(self) -> int:
        return self.body.stat().st_size if isinstance(self.body, Path) else len(self.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            return self._plain(404, b"not found\n")
        with self.server.lock:
            route.requests.append(self.headers.get("Range"))
            failing = route.fail_times != 0
            if route.fail_times > 0:
                route.fail_times -= 1
            dropping = route.drop_after is not None and route.drops != 0
            if dropping and route.drops > 0:
                route.drops -= 1
        if route.delay_s:
            time.sleep(route.delay_s)
        if route.redirect_to:
            self.send_response(302)
            self.send_header("Location", route.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if failing:
            return self._plain(route.status, f"failing with {route.status}\n".encode())
        self._serve(route, dropping)
        return None

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, route: Route, dropping: bool) -> None:
        size = route.size()
        start = 0
        spec = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if spec and route.ranges and (if_range is None or if_range == route.etag):
            start = int(spec.removeprefix("bytes=").split("-", 1)[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if route.etag:
            self.send_header("ETag", route.etag)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        limit = size if not dropping else min(size, start + route.drop_after)
        self._send_body(route, start, limit)
        if dropping:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send_body(self, route: Route, start: int, end: int) -> None:
        if isinstance(route.body, Path) and not route.trickle_s:
            # sendfile: the server must not be the bottleneck of the benchmark
            with open(route.body, "rb") as fh, contextlib.suppress(OSError):
                self.connection.sendfile(fh, start, end - start)
            return
        pos = start
        fh = open(route.body, "rb") if isinstance(route.body, Path) else None  # noqa: SIM115
        try:
            while pos < end:
                n = min(route.chunk, end - pos)
                if fh is not None:
                    fh.seek(pos)
                    data = fh.read(n)
                else:
                    data = route.body[pos:pos + n]
                try:
                    self.wfile.write(data)
                except OSError:
                    return
                pos += n
                if route.trickle_s:
                    time.sleep(route.trickle_s)
        finally:
            if fh is not None:
                fh.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        pass  # clients that time out or hang up mid-body are part of the tests


class LoopbackHTTPServer:
    """``with LoopbackHTTPServer() as srv: url = srv.add("/a.tar.gz", data, drop_after=1000)``."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, body: bytes | Path, **faults) -> str:
        """Serve ``body`` at ``path`` with the given :class:`Route` fault settings; return its URL."""
        self._server.routes[path] = Route(body=body, **faults)
        return self.base_url + path

    def route(self, path: str) -> Route:
        return self._server.routes[path]

    def start(self) -> LoopbackHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackHTTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoS3Server:
    """``python -m moto.server`` on 127.0.0.1, started as a subprocess."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> MotoS3Server:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-p", str(self.port), "-H", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto.server exited with {self._proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto.server did not start in time")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
