"""TCP listeners, TLS per connection, and the stop modes of the main listener.

The accept loop only accepts; each connection gets a thread that does the TLS handshake (so a
slow client never blocks accept) and then runs the HTTP handler. Stop modes:
  refuse  the listening socket is closed (new connections are refused) and every open
          connection is shut down; start binds the same port again.
  hang    connections are accepted but not answered (no TLS handshake, no response) until start.
  500     (or any HTTP status code) every API request is answered with that Status.
The control listener (DIR/control) is never stopped, so a test can always reach /fake/start.
"""

import socket
import ssl
import threading


class Listener:
    def __init__(self, bind, port, ssl_ctx, handler_cls, hub, control_only, handshake_timeout=10,
                 idle_timeout=120):
        self.bind = bind
        self.port = port
        self.ssl_ctx = ssl_ctx
        self.handler_cls = handler_cls
        self.hub = hub  # the FakeApiServer: mode, shutdown flag, connection registry
        self.control_only = control_only
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.sock = None
        self.lock = threading.Lock()

    def open(self):
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.bind, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        with self.lock:
            self.sock = sock
        threading.Thread(target=self._accept_loop, args=(sock,), daemon=True,
                         name="accept-%d" % self.port).start()

    def close(self):
        with self.lock:
            sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @property
    def is_open(self):
        return self.sock is not None

    def _accept_loop(self, sock):
        while True:
            try:
                conn, addr = sock.accept()
            except OSError:
                return  # closed by stop(refuse) or shutdown
            threading.Thread(target=self._serve, args=(conn, addr), daemon=True).start()

    def _serve(self, conn, addr):
        hub = self.hub
        if not self.control_only:
            # hang: hold the TCP connection without a handshake until start (or shutdown).
            while not hub.running.wait(0.2):
                if hub.shutting_down:
                    conn.close()
                    return
        try:
            # Headers and body go out in separate writes; without this, Nagle plus the client's
            # delayed ACK add 40 ms to every response.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.handshake_timeout)
            tls = self.ssl_ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        tls.settimeout(self.idle_timeout)
        hub.track(tls, self.control_only)
        try:
            self.handler_cls(tls, addr, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            hub.untrack(tls)
            try:
                tls.close()
            except OSError:
                pass
