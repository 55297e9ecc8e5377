"""The command channel between the orchestrator and its worker processes: length-prefixed JSON frames over TCP.

Plain data only (never pickle): a frame is an 8-byte big-endian length and a UTF-8 JSON document. Requests are
`{"cmd": name, "args": {...}}`; replies are `{"ok": true, "result": ...}` or `{"ok": false, "error": text}`.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct(">Q")
MAX_FRAME = 1 << 32  # 4 GiB: a corrupt length fails fast instead of allocating forever


class ChannelClosed(ConnectionError):
    """The peer closed the connection (or died)."""


def send_msg(sock: socket.socket, msg: dict[str, Any]) -> None:
    """Send one message as a frame."""
    data = json.dumps(msg, separators=(",", ":")).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ChannelClosed("connection closed by peer")
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket, max_bytes: int = MAX_FRAME) -> dict[str, Any]:
    """Receive one whole message (blocking, honouring the socket's timeout); `max_bytes` bounds what an
    unauthenticated peer can make us read."""
    (n,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if n > max_bytes:
        raise ChannelClosed(f"frame of {n} bytes exceeds the limit of {max_bytes}: corrupt stream or not our peer")
    msg = json.loads(_recv_exact(sock, n))
    if not isinstance(msg, dict):
        raise ChannelClosed(f"expected a JSON object, got {type(msg).__name__}")
    return msg


class FrameReader:
    """Non-blocking reassembly of frames from a socket that `select` reported readable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def feed(self) -> list[dict[str, Any]]:
        """Read what is available; return the complete messages. Raises ChannelClosed on EOF."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ChannelClosed("connection closed by peer")
        self.buf += chunk
        out = []
        while len(self.buf) >= _HEADER.size:
            (n,) = _HEADER.unpack_from(self.buf)
            if len(self.buf) < _HEADER.size + n:
                break
            out.append(json.loads(bytes(self.buf[_HEADER.size : _HEADER.size + n])))
            del self.buf[: _HEADER.size + n]
        return out
