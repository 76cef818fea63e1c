"""The sandbox provider in a process of its own, reached over HTTP: the wire form and the client.

The in-process sandbox (``connectors.providers.sandbox``) dies with the connector that holds it.
Where the connector itself is killed and restarted (``make chaos``), the provider must outlive
it, as a real acquirer does: ``evledger sandbox serve`` (``entrypoints.sandbox_service``) holds
one ``SandboxProvider`` and this adapter calls it. Every call is one JSON request; the answer is
the result or the provider error with its code, and the client raises the same error class the
in-process sandbox would. A request that times out on the wire is ``ProviderTimeout`` (in doubt:
the provider may have applied it); a refused connection is ``ProviderUnavailable`` (nothing
applied).

Provider config (``--providers FILE``)::

    [providers.acquirer]
    kind = "sandbox-http"
    url = "http://127.0.0.1:12112"
    timeout = 2.0                       # seconds per request (default 5)
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import httpx

from connectors.providers import errors
from connectors.providers.base import (
    AuthorizationResult,
    AuthorizeCall,
    CaptureCall,
    CaptureResult,
    ProviderStatus,
    RefundCall,
    RefundResult,
    VoidCall,
    VoidResult,
)
from ledger.money import Money
from ledger.settlement.reconciliation import SettlementLine
from schemas.json_events import json_value

T = TypeVar("T")

ERRORS: dict[str, type[errors.ProviderError]] = {
    cls.code: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.ProviderError)
}


def to_wire(value: Any) -> Any:
    """A call or result as JSON-ready data, as events are (``schemas.json_events.json_value``):
    Money as ``{amount_minor, currency}``, times in ISO 8601, enums by value."""
    return json_value(list(value) if isinstance(value, tuple) else value)


def from_wire(cls: type[T], data: dict[str, Any]) -> T:
    """The dataclass ``cls`` from ``to_wire``'s form. Raises KeyError/TypeError/ValueError on a
    document of another shape."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        values[f.name] = _field(hints[f.name], data[f.name])
    return cls(**values)


def _field(hint: Any, raw: Any) -> Any:
    if raw is None:
        return None
    kinds = typing.get_args(hint) if typing.get_origin(hint) is not None else (hint,)
    for kind in kinds:
        if kind is Money:  # integer minor units only: a float or a bool is refused, not cut
            minor = raw["amount_minor"]
            if not isinstance(minor, int) or isinstance(minor, bool):
                raise ValueError(f"amount_minor must be an integer of minor units, not {minor!r}")
            return Money(minor, str(raw["currency"]))
        if kind is datetime:
            return datetime.fromisoformat(raw)
        if isinstance(kind, type) and issubclass(kind, Enum):
            return kind(raw)
    return raw


def error_to_wire(exc: errors.ProviderError) -> dict[str, Any]:
    return {
        "code": exc.code,
        "message": exc.message,
        "provider_code": exc.provider_code,
        "context": {k: str(v) for k, v in exc.context.items() if k != "provider"},
    }


def error_from_wire(provider: str, data: dict[str, Any]) -> errors.ProviderError:
    cls = ERRORS.get(str(data.get("code")), errors.ProviderError)
    message = str(data.get("message") or "provider error")
    context = dict(data.get("context") or {})
    if issubclass(cls, errors.PaymentDeclined):
        code = str(data.get("provider_code") or "card_declined")
        return cls(message, provider=provider, decline_code=code, **context)
    return cls(message, provider=provider, provider_code=data.get("provider_code"), **context)


class RemoteSandbox:
    """``PaymentProvider`` over HTTP to ``evledger sandbox serve``."""

    def __init__(self, url: str, *, name: str = "sandbox-http", timeout: float = 5.0) -> None:
        self._name = name
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    @property
    def name(self) -> str:
        return self._name

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._request("POST", path, body)
        return answer

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise errors.ProviderTimeout(
                f"{path} timed out after {self._http.timeout.read}s", provider=self._name
            ) from exc
        except httpx.ConnectError as exc:
            raise errors.ProviderUnavailable(
                f"cannot reach the sandbox service at {self._http.base_url}: {exc}",
                provider=self._name,
            ) from exc
        except httpx.TransportError as exc:  # connection reset mid-answer: may have applied
            raise errors.ProviderTimeout(
                f"{path} failed in flight: {exc}", provider=self._name
            ) from exc
        document = response.json() if response.content else {}
        if response.status_code >= 400:
            raise error_from_wire(self._name, document.get("error") or {})
        return document

    def authorize(self, call: AuthorizeCall) -> AuthorizationResult:
        return from_wire(AuthorizationResult, self._post("/v1/authorize", to_wire(call)))

    def capture(self, call: CaptureCall) -> CaptureResult:
        return from_wire(CaptureResult, self._post("/v1/capture", to_wire(call)))

    def void(self, call: VoidCall) -> VoidResult:
        return from_wire(VoidResult, self._post("/v1/void", to_wire(call)))

    def refund(self, call: RefundCall) -> RefundResult:
        return from_wire(RefundResult, self._post("/v1/refund", to_wire(call)))

    def fetch_status(self, provider_reference: str) -> ProviderStatus:
        answer = self._post("/v1/status", {"provider_reference": provider_reference})
        return from_wire(ProviderStatus, answer)

    def find_authorization(self, payment_id: str) -> AuthorizationResult | None:
        answer = self._post("/v1/find", {"payment_id": payment_id})
        found = answer.get("authorization")
        return None if found is None else from_wire(AuthorizationResult, found)

    def settlement_report(self, since: datetime, until: datetime) -> list[SettlementLine]:
        body = {"since": since.isoformat(), "until": until.isoformat()}
        answer = self._post("/v1/report", body)
        return [from_wire(SettlementLine, line) for line in answer["lines"]]

    def close(self) -> None:
        self._http.close()
