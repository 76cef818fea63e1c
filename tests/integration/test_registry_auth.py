"""Schema registry credentials (``EVLEDGER_REGISTRY_USERNAME`` / ``_PASSWORD``): in front of the
stack's registry, a proxy that answers 401 without the right basic-auth header (as Confluent
Cloud's registry does). With the settings' credentials the client registers and reads schemas;
without them, or with a wrong password, it is refused and says so."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from connectors.settings import Settings
from schemas.registry import Registry, RegistryError

USER, PASSWORD = "sr-key", "sr-secret-for-the-test"


@pytest.fixture(scope="module")
def guarded(stack: Settings) -> Iterator[str]:
    """A basic-auth proxy to the stack's registry; yields its URL (same path as the registry)."""
    upstream = stack.registry_url
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            if self.headers.get("Authorization") != expected:
                body = b'{"error_code": 401, "message": "Unauthorized"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            base = upstream.split("/apis/", 1)[0]
            answer = httpx.request(
                self.command, base + self.path, content=self.rfile.read(length) if length else None,
                headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
            )  # fmt: skip
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = "/apis/" + upstream.split("/apis/", 1)[1]
    yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    server.shutdown()
    server.server_close()


def settings_for(url: str, **credentials: str) -> Settings:
    return Settings.from_env({"EVLEDGER_REGISTRY_URL": url, **credentials})


def test_with_the_credentials_the_client_registers_and_reads(guarded: str) -> None:
    settings = settings_for(guarded, EVLEDGER_REGISTRY_USERNAME=USER,
                            EVLEDGER_REGISTRY_PASSWORD=PASSWORD)  # fmt: skip
    assert PASSWORD not in repr(settings)
    registry = Registry(settings.registry_url, settings.registry_client())
    ids = registry.register_all()
    assert ids and all(isinstance(i, int) for i in ids.values())


@pytest.mark.parametrize("password", [None, "wrong"])
def test_without_them_the_registry_refuses(guarded: str, password: str | None) -> None:
    extra = {} if password is None else {"EVLEDGER_REGISTRY_USERNAME": USER,
                                         "EVLEDGER_REGISTRY_PASSWORD": password}  # fmt: skip
    settings = settings_for(guarded, **extra)
    registry = Registry(settings.registry_url, settings.registry_client())
    with pytest.raises(RegistryError, match=r"401|Unauthorized"):
        registry.register_all()


def test_a_user_without_a_password_is_a_settings_error() -> None:
    from connectors.settings import SettingsError

    with pytest.raises(SettingsError, match="go together"):
        Settings.from_env({"EVLEDGER_REGISTRY_USERNAME": USER})
