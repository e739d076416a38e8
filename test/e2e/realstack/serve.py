"""Runs openai_app.py under uvicorn with one of its two HTTP implementations, timing each request
from the read that carried its first bytes (docs/testing.md):

  /usr/bin/python3 serve.py --http h11|httptools --host ADDR --port N

The app also runs under plain `uvicorn --http ...`; this runner only subclasses uvicorn's own
protocol classes to note CLOCK_MONOTONIC in data_received - called by asyncio right after the
recv() that returned the bytes - and hands that time to the app's ground truth in the ASGI scope
("rx_start_ns"). The app's own entry comes later, after the event loop ran whatever was ready,
which on a busy 2-core machine can be tens of milliseconds after the kernel saw the request.
"""

import argparse
import os
import sys
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TimedH11(H11Protocol):
    # h11 builds the scope once the head is complete: within the data_received that completed it,
    # or - when the bytes came while the previous exchange was still finishing - later, from
    # handle_events after the response. Either way the request began with the first read that
    # came while the client was between requests.
    _rx_pending = None

    def data_received(self, data):
        if self._rx_pending is None and self.conn.their_state in (h11.IDLE, h11.DONE):
            self._rx_pending = time.monotonic_ns()
        super().data_received(data)

    def handle_events(self):
        before = self.scope
        super().handle_events()
        if self.scope is not None and self.scope is not before:
            self.scope["rx_start_ns"] = self._rx_pending or time.monotonic_ns()
            self._rx_pending = None


class TimedHttpTools(HttpToolsProtocol):
    def data_received(self, data):
        self._rx_ns = time.monotonic_ns()
        super().data_received(data)

    def on_message_begin(self):
        # httptools calls this at the request's first byte, inside data_received.
        super().on_message_begin()
        self.scope["rx_start_ns"] = self._rx_ns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", choices=["h11", "httptools"], required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    protocol = TimedH11 if args.http == "h11" else TimedHttpTools
    config = uvicorn.Config("openai_app:app", host=args.host, port=args.port, http=protocol,
                            loop="asyncio", timeout_keep_alive=60, access_log=False,
                            log_level="warning")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
