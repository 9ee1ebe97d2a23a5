"""Refuse cross-site use of the server: a web page the user visits must not drive the model on their machine.

- `Origin`: browsers send it on cross-site requests and WebSocket handshakes. A request whose `Origin` is neither
  the server's own (same host and port as `Host`) nor one of the allowed origins (`omni-hf serve --cors-origins`) is
  refused, on HTTP (403) and on `/v1/realtime` (closed before it is accepted). Clients that are not browsers (the
  `openai` package, curl, voice-agent frameworks) send no `Origin` and are not affected.
- `Host`: without an API key, a page could still reach 127.0.0.1 through DNS rebinding (its own name resolving to
  this machine); so the `Host` header must name this server: a loopback name, the bound address, or one of
  `--allowed-hosts`.
- JSON bodies must say so (`Content-Type: application/json`): a page can send `text/plain` without a preflight.
"""

from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _hostname(host_header: str) -> str:
    """`example.com:8000` → `example.com`; `[::1]:8000` → `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def origin_allowed(origin: str | None, host_header: str | None, allowed_origins: Iterable[str] = ()) -> bool:
    """Whether a request with this `Origin` may use the server (no `Origin`: not a browser, allowed)."""
    if origin is None:
        return True
    allowed = {o.rstrip("/").lower() for o in allowed_origins}
    if "*" in allowed or origin.rstrip("/").lower() in allowed:
        return True
    parts = urlsplit(origin)
    return bool(host_header) and parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def host_allowed(host_header: str | None, allowed_hosts: Iterable[str]) -> bool:
    """Whether the `Host` header names this server (`allowed_hosts`: hostnames, `*` for any)."""
    allowed = {h.strip("[]").lower() for h in allowed_hosts}
    return "*" in allowed or (bool(host_header) and _hostname(host_header) in allowed)


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class CrossSiteGuard:
    """ASGI middleware applying the module's rules to HTTP requests and WebSocket handshakes.

    Args:
        allowed_hosts: hostnames the `Host` header may name, or None to skip the check (an API key is required).
        allowed_origins: browser origins besides the server's own (e.g. `https://my-app.example`; `*`: any).
    """

    def __init__(self, app, allowed_hosts: Iterable[str] | None, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else (*LOOPBACK_HOSTS, *allowed_hosts)
        self.allowed_origins = tuple(allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        host = headers.get("host")
        if self.allowed_hosts is not None and not host_allowed(host, self.allowed_hosts):
            problem = f"Host {host!r} is not this server's; add it with --allowed-hosts to serve it under that name"
        elif not origin_allowed(headers.get("origin"), host, self.allowed_origins):
            problem = f"Origin {headers.get('origin')!r} may not use this server (allow it with --cors-origins)"
        else:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": problem[:120]})
            return
        body = {"error": {"message": problem, "type": "invalid_request_error", "param": None, "code": "forbidden"}}
        await JSONResponse(body, status_code=403)(scope, receive, send)


def is_json(content_type: str | None) -> bool:
    """Whether a `Content-Type` header says JSON (`application/json`, with or without parameters)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


__all__ = ["LOOPBACK_HOSTS", "CrossSiteGuard", "host_allowed", "is_json", "origin_allowed"]
