"""A TLS proxy in front of the local kube-apiserver that injects the faults a real server cannot produce
on demand: watches that go silent (the connection stays open, no event arrives) and requests answered
with an error (e.g. every status write of a model fails with 503 for a while).

The operator under test is given a kubeconfig pointing at the proxy (`write_kubeconfig`); the proxy
presents the API server's own serving certificate, so the operator verifies it exactly as before::

    with FaultProxy(plane) as proxy:
        operator = OperatorProcess(proxy.write_kubeconfig(plane.operator_kubeconfig, tmp / "kc"), ...)
        proxy.silence_watches()          # established and new watch streams deliver nothing
        proxy.reject(r"PATCH .*/nlpmodels/chat/status")   # answered 503, never forwarded
        proxy.heal()                     # back to a transparent proxy; silenced watches are closed

Only HTTP/1.1 without pipelining is handled (what the kubernetes client and kopf's aiohttp send).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from nlpmodel_harness.childproc import free_ports

__all__ = ["FaultProxy"]

_HEADER_END = b"\r\n\r\n"


class _Conn:
    def __init__(self) -> None:
        self.watching = False  # the request in flight on this connection is a watch
        self.writer: asyncio.StreamWriter | None = None


class FaultProxy:
    def __init__(self, upstream_url: str, cert_dir: Path) -> None:
        """`upstream_url`: the API server (https://127.0.0.1:PORT); `cert_dir`: its --cert-dir."""
        self.upstream_host, port = upstream_url.removeprefix("https://").rsplit(":", 1)
        self.upstream_port = int(port)
        self.cert = cert_dir / "apiserver.crt"
        self.key = cert_dir / "apiserver.key"
        self.port = free_ports(1)[0]
        self.url = f"https://127.0.0.1:{self.port}"
        self._silent = False
        self._rejects: list[re.Pattern[str]] = []
        self.rejected = 0  # requests answered with an error so far
        self.silenced_bytes = 0  # bytes of watch responses swallowed
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    # -- control (any thread) ----------------------------------------------------------------------------

    def silence_watches(self) -> None:
        self._silent = True

    def reject(self, pattern: str) -> None:
        """Answer requests whose `METHOD /path?query` matches `pattern` with 503, without forwarding."""
        self._rejects.append(re.compile(pattern))

    def heal(self) -> None:
        """Transparent again; the silenced watch connections are closed (the clients reconnect)."""
        self._silent = False
        self._rejects.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._close_watches)

    def write_kubeconfig(self, original: Path, path: Path) -> Path:
        """A copy of `original` (same user and CA) whose server is this proxy."""
        config: dict[str, Any] = yaml.safe_load(original.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.url
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._server is not None:
            server = self._server

            async def shutdown() -> None:
                server.close()
                for conn in list(self._conns):
                    if conn.writer is not None:
                        conn.writer.close()

            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the proxy ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(self.cert, self.key)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=server_ctx)
        )
        self._ready.set()
        loop.run_forever()
        loop.close()

    def _close_watches(self) -> None:
        for conn in list(self._conns):
            if conn.watching and conn.writer is not None:
                conn.writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn()
        conn.writer = writer
        self._conns.add(conn)
        upstream_ctx = ssl.create_default_context()
        upstream_ctx.check_hostname = False
        upstream_ctx.verify_mode = ssl.CERT_NONE  # our own API server on loopback
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port, ssl=upstream_ctx
            )
        except OSError:
            writer.close()
            self._conns.discard(conn)
            return
        pump = asyncio.create_task(self._pump_responses(up_reader, writer, conn))
        try:
            while True:
                head = await reader.readuntil(_HEADER_END)
                body = await self._read_body(reader, head)
                line = head.split(b"\r\n", 1)[0].decode(errors="replace")
                method, target = [*line.split(" "), "", ""][:2]
                request = f"{method} {target}"
                if any(p.search(request) for p in self._rejects):
                    self.rejected += 1
                    writer.write(_unavailable(request))
                    await writer.drain()
                    continue
                conn.watching = "watch=true" in target or "watch=1" in target
                up_writer.write(head + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError):
            pass
        finally:
            pump.cancel()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
            self._conns.discard(conn)

    async def _read_body(self, reader: asyncio.StreamReader, head: bytes) -> bytes:
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if match is not None:
            return await reader.readexactly(int(match[1]))
        if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
            chunks = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                chunks += size_line + chunk
                if size == 0:
                    return chunks
        return b""

    async def _pump_responses(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        try:
            while True:
                data = await up_reader.read(65536)
                if not data:
                    break
                if conn.watching and self._silent:
                    self.silenced_bytes += len(data)
                    continue  # the stream stays open and says nothing
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _unavailable(request: str) -> bytes:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": f"fault injected by the test proxy: {request}",
            "reason": "ServiceUnavailable",
            "code": 503,
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body
