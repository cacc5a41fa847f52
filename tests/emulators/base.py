"""HTTP plumbing shared by the emulators: a threaded HTTPS server on loopback, parsed
requests and responses.

An emulator subclasses `EmulatorServer` and implements `dispatch(request) -> Response`.
The server runs `http.server.ThreadingHTTPServer` in a daemon thread, speaks HTTP/1.1
with keep-alive, and wraps its socket with the TLS material of `EmulatorTLS`.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import shutil
import socket
import socketserver
import ssl
import struct
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .tls import EmulatorTLS

logger = logging.getLogger(__name__)

# Bodies above this size are rejected with 413 before they are read, whatever an emulator
# allows, so that a runaway test cannot exhaust memory.
MAX_REQUEST_BYTES = 64 * 1024 * 1024

# An idle keep-alive connection is closed after this many seconds.
IDLE_CONNECTION_TIMEOUT = 30.0


@dataclass
class Request:
    """One HTTP request as passed to the emulator's `dispatch`."""

    method: str
    path: str
    """Percent-decoded path without the query string."""
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    client_address: tuple[str, int]

    def query_value(self, name: str) -> str | None:
        """Return the first value of query parameter `name`, or None when it is absent."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    """A response to send, or an instruction to reset the connection without one."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset_connection: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        """Build a response whose body is `payload` serialised as JSON."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        all_headers = {"Content-Type": "application/json; charset=utf-8"}
        all_headers.update(headers or {})
        return cls(status, body, all_headers)

    @classmethod
    def reset(cls) -> Response:
        """Build the instruction to close the TCP connection with a reset and send nothing."""
        return cls(0, reset_connection=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT
    # Buffer each response and send it in one write with TCP_NODELAY. Headers and body in
    # separate small writes would stall about 40 ms each on Nagle plus delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return

        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=unquote(url.path),
            query=parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            client_address=self.client_address,
        )
        try:
            response = self.server.emulator.dispatch(request)
        except Exception:
            # A bug in an emulator must show up in the test as a 500, not as a hung client.
            logger.exception("emulator failed on %s %s", request.method, request.path)
            response = Response.json(500, {"error": {"code": "EmulatorError", "message": "The emulator raised an exception; see its log."}})

        if response.reset_connection:
            self._reset_connection()
            return
        self._send(response)

    def _read_body(self) -> bytes | None:
        """Read the request body (Content-Length or chunked), or send an error response and return None."""
        transfer_encoding = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in transfer_encoding:
            return self._read_chunked_body()

        length_header = self.headers.get("Content-Length", "0")
        try:
            length = int(length_header)
        except ValueError:
            self._send_plain_error(400, f"Invalid Content-Length header: {length_header!r}.")
            return None
        if length < 0:
            self._send_plain_error(400, f"Invalid Content-Length header: {length_header!r}.")
            return None
        if length > MAX_REQUEST_BYTES:
            self._send_plain_error(413, f"Request body of {length} bytes exceeds the emulator's maximum of {MAX_REQUEST_BYTES} bytes.")
            return None
        return self.rfile.read(length)

    def _read_chunked_body(self) -> bytes | None:
        chunks = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self._send_plain_error(400, "Invalid chunk size in a chunked request body.")
                return None
            if size == 0:
                break
            total += size
            if total > MAX_REQUEST_BYTES:
                self._send_plain_error(413, f"Request body exceeds the emulator's maximum of {MAX_REQUEST_BYTES} bytes.")
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)
        # Skip trailer fields up to the blank line that ends the message.
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _send_plain_error(self, status: int, message: str) -> None:
        """Send an error response for a request whose body could not be read, and close the connection."""
        self.close_connection = True
        self._send(Response(status, message.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}))

    def _reset_connection(self) -> None:
        """Close the TCP connection with RST (SO_LINGER 0) and without an HTTP response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The buffered reader holds a reference to the socket, so close it first, otherwise
        # close() on the socket is deferred and no reset goes out.
        self.rfile.close()
        self.wfile.close()
        self.connection.close()
        # handle_one_request() and finish() flush wfile afterwards; give them a harmless one.
        self.wfile = io.BytesIO()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s:%s %s", self.client_address[0], self.client_address[1], format % args)


class _EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections may sit idle in their threads; stop() closes them itself.
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer, tls: EmulatorTLS | None) -> None:
        super().__init__(address, _RequestHandler, bind_and_activate=False)
        self.emulator = emulator
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            self.server_close()
            raise
        if tls is not None:
            self.socket = tls.wrap_server_socket(self.socket)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name with getfqdn, which is not
        # needed for a loopback address and can be slow.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.open_connections)
            self.open_connections.clear()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        # Clients that drop the connection or fail the TLS handshake are expected in
        # tests; log them instead of printing a traceback to stderr.
        logger.debug("connection from %s:%s ended with an error", *client_address[:2], exc_info=True)


def validate_loopback_host(host: str) -> None:
    """Raise ValueError unless `host` is an IPv4 loopback address or `localhost`."""
    if host == "localhost":
        return
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"emulators bind to an IPv4 loopback address only, got host={host!r}; use 127.0.0.1") from None
    if not address.is_loopback:
        raise ValueError(f"emulators bind to an IPv4 loopback address only, got host={host!r}; use 127.0.0.1")


class EmulatorServer:
    """Base class: serve `dispatch` over HTTPS (or HTTP) on loopback in a background thread.

    `tls` is an `EmulatorTLS` to share a CA between emulators, None to create a private CA
    in a temporary directory (removed by `stop`, so such an emulator cannot be restarted),
    or False for plain HTTP. `port=0` picks a free port, which
    `port` and `base_url` report after `start()`.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls: EmulatorTLS | None | bool = None) -> None:
        validate_loopback_host(host)
        if tls is True:
            tls = None
        self.host = host
        # A private CA lives in a temporary directory that stop() removes.
        self._owns_tls_directory = tls is None
        self._tls_directory_removed = False
        self.tls: EmulatorTLS | None = None if tls is False else (tls or EmulatorTLS.create())
        self._requested_port = port
        self._server: _EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    def start(self):
        """Bind the port and start serving in a daemon thread; return self."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running at {self.base_url}")
        if self._tls_directory_removed:
            raise RuntimeError(f"{type(self).__name__} was stopped and its private CA removed; pass tls=EmulatorTLS.create(directory) to restart an emulator")
        self._server = _EmulatorHTTPServer((self.host, self._requested_port), self, self.tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s listening on %s", type(self).__name__, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the port."""
        if self._server is None:
            return
        server, thread = self._server, self._thread
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None
        if self._owns_tls_directory and self.tls is not None:
            shutil.rmtree(self.tls.directory, ignore_errors=True)
            self._tls_directory_removed = True
        logger.info("%s stopped", type(self).__name__)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return self._server.server_address[1]

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    @property
    def base_url(self) -> str:
        """Return `scheme://host:port` without a trailing slash."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ca_bundle_path(self) -> str | None:
        """Path of the PEM file that verifies this server's certificate (None for HTTP)."""
        return None if self.tls is None else str(self.tls.ca_bundle_path)
