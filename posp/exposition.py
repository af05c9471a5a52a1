"""The HTTP endpoint of a program's metrics/admin port: ``/metrics`` (Prometheus text)
and, for the switch, ``/ready`` and ``/live`` (:mod:`posp.readiness`).

Invariants:
* Each path is served only on itself; any other path answers 404 (a scraper pointed
  at the wrong path fails loudly instead of silently getting metrics).
* The server runs in its own threads (prometheus_client's threading WSGI server), so a
  scrape or a health check never waits for the event loop; what needs the loop
  (readiness probes) is handed to it by the route's callable, with a deadline.
* A port that cannot be bound raises ConfigError naming host and port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from posp.errors import ConfigError

#: A JSON route: returns (HTTP status, body object).
JsonRoute = Callable[[], tuple[int, object]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS: Final = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (a scrape every few seconds is not news)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def exposition_app(
    registry: CollectorRegistry, routes: Mapping[str, JsonRoute] | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """WSGI app: ``/metrics`` from ``registry``, each of ``routes`` as JSON, else 404."""
    metrics_app = make_wsgi_app(registry)
    json_routes = dict(routes or {})

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        route = json_routes.get(path)
        status, body = route() if route is not None else (404, {"error": f"no such path {path}"})
        payload = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        start_response(f"{status} {_REASONS.get(status, '')}".rstrip(), headers)
        return [payload]

    return app


class ExpositionServer:
    """The metrics/admin HTTP server of one program; ``port`` 0 picks a free one."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        routes: Mapping[str, JsonRoute] | None = None,
    ) -> None:
        self._app = exposition_app(registry, routes)
        self._host = host
        self._port = port
        self._server: ThreadingWSGIServer | None = None

    def start(self) -> None:
        """Bind and serve in a daemon thread; ConfigError naming the port if it is taken."""
        try:
            server = make_server(
                self._host,
                self._port,
                self._app,
                server_class=ThreadingWSGIServer,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise ConfigError(
                f"metrics port {self._host}:{self._port}: {exc.strerror or exc}"
                " (set metrics_port to a free port)"
            ) from exc
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        self._server = server

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); 0 before start."""
        return self._server.server_port if self._server is not None else 0

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
