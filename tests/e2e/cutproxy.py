"""A TCP relay on 127.0.0.1 in front of a real server that can die and come back.

``CutProxy(upstream_port).start()`` listens on its own port and forwards every connection to
the server. ``cut_after(n, direction)`` makes it die once ``n`` bytes have flowed in that
direction (``"up"``: client to server, as in a push; ``"down"``: server to client, as in a
pull): every open connection is reset and the port refuses new ones, exactly what a client
sees when the server process dies. ``start()`` again brings it back on the same port, with the
server's data intact.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class CutProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream = (host, upstream_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._limit: dict[str, int | None] = {"up": None, "down": None}
        self.bytes = {"up": 0, "down": 0}
        self.cuts = 0
        self.alive = False

    # -- life cycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> CutProxy:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((self.host, self.port))
        lst.listen(64)
        lst.settimeout(0.05)
        self.port = lst.getsockname()[1]
        with self._lock:
            self._listener = lst
            self.alive = True
        threading.Thread(target=self._accept_loop, args=(lst,), daemon=True).start()
        return self

    def cut(self) -> None:
        """Die: reset every connection and stop listening."""
        with self._lock:
            if not self.alive:
                return
            self.alive = False
            self.cuts += 1
            lst, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
            self._limit = {"up": None, "down": None}
        if lst is not None:
            lst.close()
        for s in conns:
            with contextlib.suppress(OSError):
                # RST, not FIN: the peer sees "connection reset", as when a process dies. shutdown()
                # first: close() alone leaves the socket open while a pump thread sits in recv().
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def cut_after(self, nbytes: int, direction: str) -> None:
        with self._lock:
            self.bytes = {"up": 0, "down": 0}
            self._limit = {"up": None, "down": None, direction: nbytes}

    def stop(self) -> None:
        self.cut()

    def __enter__(self) -> CutProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- relay -------------------------------------------------------------------------------
    def _accept_loop(self, lst: socket.socket) -> None:
        while True:
            with self._lock:
                if self._listener is not lst:
                    return
            try:
                client, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                if not self.alive:
                    client.close()
                    server.close()
                    return
                self._conns.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.bytes[direction] += len(data)
                    limit = self._limit[direction]
                    over = limit is not None and self.bytes[direction] >= limit
                if over:
                    self.cut()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
