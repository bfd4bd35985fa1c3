"""A loopback TCP proxy that a test can cut and restore, to take a server "down" without
touching the real one (which other tests share).

Three ways to be down:

* ``cut()`` / ``refuse()``: the port refuses new connections and open ones are dropped
  (a server that is not running);
* ``black_hole()``: the port accepts connections and nothing ever comes back, on new
  connections or open ones (a network that drops every packet, a server that hangs);
* ``start()`` / ``restore()`` brings it back: a black hole lets the held traffic through
  in order, as a network that heals does.
"""

from __future__ import annotations

import socket
import threading

from tests.redis_server import free_port


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()  # cleared while black-holed
        self._flowing.set()
        self.up = False
        self.accepted = 0  # connections accepted so far (a test can wait for a client to connect)

    # --- modes -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Accept and forward (again)."""
        self._flowing.set()
        if self._listener is None:
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", self.port))
            ls.listen(64)
            self._listener = ls
            threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        self.up = True

    restore = start

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self.up = False
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(): else the port would take one more connection
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._flowing.set()  # wakes the threads of held connections, which find them closed

    refuse = cut

    def black_hole(self) -> None:
        """Accept new connections, answer nothing, forward nothing (open connections too)."""
        self._flowing.clear()
        self.up = False
        if self._listener is None:
            self.start()
            self._flowing.clear()
            self.up = False

    # --- plumbing --------------------------------------------------------------------------------

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
                self.accepted += 1
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _held(self, s: socket.socket) -> bool:
        """Wait while black-holed; False if ``s`` was closed meanwhile (cut)."""
        while not self._flowing.wait(0.05):
            pass
        return s.fileno() != -1

    def _connect(self, client: socket.socket) -> None:
        if not self._held(client):
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        with self._lock:
            self._conns.append(server)
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self._held(dst):
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
