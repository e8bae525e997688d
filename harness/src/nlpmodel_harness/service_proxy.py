"""Revision Services for an operator run outside a cluster (no cluster DNS, no kube-proxy here).

The operator's evaluation gate reaches a revision at ``NLPMODEL_EVALUATION_URL_TEMPLATE``; pointed at
this proxy (``ServiceProxy.template``), ``/<namespace>/<service>/<path>`` is forwarded to the
stand-in model server of the revision whose hash the Service's name carries (every platform names a
revision's Service after it), as ``RevisionServers`` runs them. A revision listed in ``unreachable``
(or one without a server) answers 503, as a Service without ready endpoints does. A revision listed in
``routes`` is forwarded to that base URL instead (a real model server, e.g. ``RuntimeServers``)::

    with ServiceProxy() as proxy:        # for the operator's whole run
        env = {"NLPMODEL_EVALUATION_URL_TEMPLATE": proxy.template}
        ...
        proxy.servers = servers           # the revisions of one model (RevisionServers)
        proxy.unreachable.add(canary_revision)
        proxy.routes[revision_hash(spec)] = runtime_urls["small"]
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from nlpmodel_harness.modelserver import ModelServerProcess
from nlpmodel_harness.revision_servers import RevisionServers

__all__ = ["ServiceProxy"]

START_WAIT_S = 15.0


class ServiceProxy:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.servers: RevisionServers | None = None
        self.unreachable: set[str] = set()
        self.routes: dict[str, str] = {}  # revision -> base URL of the server that answers for it
        self.forwarded: dict[str, int] = {}  # revision -> requests forwarded to it
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload = proxy._forward(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: answers are not logged

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="service-proxy", daemon=True)

    @property
    def template(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{{namespace}}/{{service}}"

    def __enter__(self) -> ServiceProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _server_of(self, servers: RevisionServers, service: str) -> tuple[str, ModelServerProcess] | None:
        """The revision's stand-in. A revision the operator saw ready has endpoints in a cluster; here its
        stand-in may still be starting (RevisionServers polls), so it is waited for a little."""
        deadline = time.monotonic() + START_WAIT_S
        while True:
            found = [(r, s) for r, s in servers.running().items() if r in service and s.running()]
            if found or time.monotonic() > deadline:
                return found[0] if found else None
            time.sleep(0.2)

    def _forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        parts = path.lstrip("/").split("/", 2)
        if len(parts) < 3:
            return 404, b'{"error": "no such Service"}'
        service, rest = parts[1], parts[2]
        if any(revision in service for revision in self.unreachable):
            return 503, b'{"error": "no ready endpoints"}'
        routed = [(r, url) for r, url in self.routes.items() if r in service]
        servers = self.servers
        if routed:
            revision, url = routed[0]
        elif servers is None or parts[0] != servers.namespace:
            return 404, b'{"error": "no such Service"}'
        else:
            found = self._server_of(servers, service)
            if found is None:
                return 503, b'{"error": "no ready endpoints"}'
            revision, url = found[0], found[1].url
        self.forwarded[revision] = self.forwarded.get(revision, 0) + 1
        request = urllib.request.Request(
            f"{url}/{rest}", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 502, b'{"error": "bad gateway"}'
