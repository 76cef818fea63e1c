"""A local fake of Braintree's XML gateway: just the endpoints the braintree SDK calls for
transactions, with state and Braintree's validation rules, on 127.0.0.1.

Endpoints (under ``/merchants/<merchant_id>``): ``POST /transactions`` (sale),
``GET /transactions/<id>``, ``PUT .../submit_for_settlement``, ``PUT .../void``,
``POST .../refund``, ``PUT .../settle`` (the SDK's testing gateway),
``POST /transactions/advanced_search_ids`` and ``/advanced_search`` (criteria: ``order_id is``,
``ids``, ``type``, ``settled_at`` range).

Rules, as Braintree documents them: capture (submit for settlement) once, ≤ the authorized amount
(91522); void only while authorized or submitted (91504); refund only once settling/settled
(91506) and ≤ what is left (91521). Nonces: ``fake-valid-nonce`` (and any ``fake-valid-*``)
approve, ``fake-processor-declined-visa-nonce`` declines with 2000; amounts 2000.00–2999.99
decline with that code, like the real sandbox. ``api_request_key`` is accepted and ignored: the
fake models a merchant without At-Most-Once Processing, the worst case for the adapter.

``drop_next_response(operation)`` applies the next such call and then closes the connection
without answering, to test in-doubt outcomes.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

XmlValue = Any

DECLINES = {"fake-processor-declined-visa-nonce": ("2000", "Do Not Honor")}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Txn:
    id: str
    type: str
    amount: Decimal
    currency: str
    status: str
    order_id: str | None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    refund_ids: list[str] = field(default_factory=list)
    refunded_transaction_id: str | None = None
    processor_response_code: str = "1000"
    processor_response_text: str = "Approved"
    history: list[tuple[str, datetime]] = field(default_factory=list)
    settled_at: datetime | None = None

    def move(self, status: str) -> None:
        self.status = status
        self.updated_at = now()
        self.history.append((status, self.updated_at))

    def to_xml_dict(self) -> dict[str, XmlValue]:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "amount": f"{self.amount:.2f}",
            "currency-iso-code": self.currency,
            "order-id": self.order_id,
            "created-at": self.created_at,
            "updated-at": self.updated_at,
            "refund-ids": list(self.refund_ids),
            "refunded-transaction-id": self.refunded_transaction_id,
            "processor-response-code": self.processor_response_code,
            "processor-response-text": self.processor_response_text,
            "status-history": [
                {"status-event": {"status": s, "timestamp": t, "amount": f"{self.amount:.2f}"}}
                for s, t in self.history
            ],
        }


# ---------------------------------------------------------------------------- XML
def _to_python(element: ET.Element) -> XmlValue:
    kind = element.get("type")
    children = list(element)
    if kind == "array":
        return [_to_python(child) for child in children]
    if children:
        return {child.tag.replace("-", "_"): _to_python(child) for child in children}
    text = (element.text or "").strip()
    if kind == "boolean":
        return text == "true"
    if kind == "integer":
        return int(text)
    if element.get("nil") == "true":
        return None
    return text


def parse_xml(body: bytes) -> tuple[str, XmlValue]:
    root = ET.fromstring(body)
    return root.tag.replace("-", "_"), _to_python(root)


def _node(tag: str, value: XmlValue) -> str:
    if value is None:
        return f'<{tag} nil="true"/>'
    if isinstance(value, bool):
        return f'<{tag} type="boolean">{str(value).lower()}</{tag}>'
    if isinstance(value, int):
        return f'<{tag} type="integer">{value}</{tag}>'
    if isinstance(value, datetime):
        return f'<{tag} type="datetime">{value.strftime("%Y-%m-%dT%H:%M:%SZ")}</{tag}>'
    if isinstance(value, list):
        items = "".join(
            "".join(_node(k, v) for k, v in item.items()) if isinstance(item, dict)
            else _node("item", item)
            for item in value
        )  # fmt: skip
        return f'<{tag} type="array">{items}</{tag}>'
    if isinstance(value, dict):
        return f"<{tag}>{''.join(_node(k, v) for k, v in value.items())}</{tag}>"
    escaped = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{tag}>{escaped}</{tag}>"


def to_xml(tag: str, value: dict[str, XmlValue]) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + _node(tag, value)).encode()


def _error_response(
    message: str, code: str, attribute: str, transaction: Txn | None = None
) -> dict[str, XmlValue]:
    errors = {
        "errors": [],
        "transaction": {
            "errors": [{"error": {"code": code, "attribute": attribute, "message": message}}]
        },
    }
    response: dict[str, XmlValue] = {"errors": errors, "message": message, "params": {}}
    if transaction is not None:
        response["transaction"] = transaction.to_xml_dict()
    return response


class GatewayError(Exception):
    def __init__(self, status: int, tag: str, body: dict[str, XmlValue]) -> None:
        super().__init__(tag)
        self.status, self.tag, self.body = status, tag, body


def _invalid(message: str, code: str, attribute: str = "base") -> GatewayError:
    return GatewayError(422, "api-error-response", _error_response(message, code, attribute))


# ---------------------------------------------------------------------------- state
class FakeBraintreeState:
    """The gateway's transactions and rules, independent of HTTP."""

    def __init__(
        self, currencies: dict[str, str] | None = None, default_currency: str = "EUR"
    ) -> None:
        self.currencies = currencies or {}  # merchant account id → currency
        self.default_currency = default_currency
        self.lock = threading.Lock()
        self.transactions: dict[str, Txn] = {}
        self.drop: set[str] = set()
        self.requests: list[tuple[str, str]] = []

    def _get(self, txn_id: str) -> Txn:
        txn = self.transactions.get(txn_id)
        if txn is None:
            raise GatewayError(404, "", {})
        return txn

    def _new_id(self) -> str:
        return uuid.uuid4().hex[:8]

    @staticmethod
    def _amount(value: XmlValue, *, required: bool) -> Decimal | None:
        if value in (None, ""):
            if required:
                raise _invalid("Amount is required.", "81502", "amount")
            return None
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise _invalid("Amount is an invalid format.", "81503", "amount") from None
        if amount <= 0:
            raise _invalid("Amount must be greater than zero.", "81531", "amount")
        return amount

    def sale(self, params: dict[str, XmlValue]) -> tuple[int, Txn]:
        amount = self._amount(params.get("amount"), required=True)
        assert amount is not None
        nonce = str(params.get("payment_method_nonce") or "")
        if nonce not in DECLINES and not nonce.startswith("fake-valid"):
            raise _invalid(
                "Unknown or expired payment_method_nonce.", "91565", "payment_method_nonce"
            )
        txn = Txn(
            id=self._new_id(),
            type="sale",
            amount=amount,
            currency=self.currencies.get(
                str(params.get("merchant_account_id")), self.default_currency
            ),
            status="authorizing",
            order_id=params.get("order_id") or None,
        )
        decline = DECLINES.get(nonce)
        if decline is None and Decimal("2000") <= amount < Decimal("3000"):
            decline = (str(int(amount)), "Processor Declined")
        self.transactions[txn.id] = txn
        if decline is not None:
            txn.processor_response_code, txn.processor_response_text = decline
            txn.move("processor_declined")
            body = _error_response(decline[1], "", "base", txn)
            body["errors"] = {"errors": []}
            raise GatewayError(422, "api-error-response", body)
        txn.move("authorized")
        if (params.get("options") or {}).get("submit_for_settlement") is True:
            txn.move("submitted_for_settlement")
        return 201, txn

    def submit_for_settlement(self, txn_id: str, params: dict[str, XmlValue]) -> Txn:
        txn = self._get(txn_id)
        amount = self._amount(params.get("amount"), required=False) or txn.amount
        if txn.status != "authorized":
            raise _invalid("Cannot submit for settlement unless status is authorized.", "91507")
        if amount > txn.amount:
            raise _invalid(
                "Settlement amount cannot be more than the authorized amount.", "91522", "amount"
            )
        txn.amount = amount
        txn.move("submitted_for_settlement")
        return txn

    def void(self, txn_id: str) -> Txn:
        txn = self._get(txn_id)
        if txn.status not in {"authorized", "submitted_for_settlement"}:
            raise _invalid("Transaction can only be voided if status is authorized, "
                           "submitted_for_settlement, or settlement_pending.", "91504")  # fmt: skip
        txn.move("voided")
        return txn

    def refund(self, txn_id: str, params: dict[str, XmlValue]) -> Txn:
        sale = self._get(txn_id)
        if sale.type != "sale" or sale.status not in {"settled", "settling"}:
            raise _invalid("Cannot refund a transaction unless it is settled.", "91506")
        refunded = sum((self.transactions[r].amount for r in sale.refund_ids), start=Decimal("0"))
        amount = self._amount(params.get("amount"), required=False) or (sale.amount - refunded)
        if amount > sale.amount - refunded:
            raise _invalid("Refund amount is too large.", "91521", "amount")
        refund = Txn(
            id=self._new_id(),
            type="credit",
            amount=amount,
            currency=sale.currency,
            status="submitted_for_settlement",
            order_id=params.get("order_id") or None,
            refunded_transaction_id=sale.id,
        )
        refund.history.append(("submitted_for_settlement", refund.created_at))
        self.transactions[refund.id] = refund
        sale.refund_ids.append(refund.id)
        return refund

    def settle(self, txn_id: str) -> Txn:
        txn = self._get(txn_id)
        if txn.status != "submitted_for_settlement":
            raise _invalid("Cannot settle unless submitted for settlement.", "91507")
        txn.move("settled")
        txn.settled_at = txn.updated_at
        return txn

    def search(self, criteria: dict[str, XmlValue]) -> list[Txn]:
        found = list(self.transactions.values())
        order = criteria.get("order_id")
        if isinstance(order, dict) and "is" in order:
            found = [t for t in found if t.order_id == order["is"]]
        ids = criteria.get("ids")
        if isinstance(ids, list):
            found = [t for t in found if t.id in ids]
        kinds = criteria.get("type")
        if isinstance(kinds, list):
            found = [t for t in found if t.type in kinds]
        settled = criteria.get("settled_at")
        if isinstance(settled, dict):
            low = _parse_time(settled.get("min"))
            high = _parse_time(settled.get("max"))
            found = [
                t
                for t in found
                if t.settled_at is not None
                and (low is None or t.settled_at >= low)
                and (high is None or t.settled_at <= high)
            ]
        return found


def _parse_time(value: XmlValue) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------- HTTP
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/transactions$"), "sale"),
    ("POST", re.compile(r"^/transactions/advanced_search_ids$"), "search_ids"),
    ("POST", re.compile(r"^/transactions/advanced_search$"), "search"),
    ("GET", re.compile(r"^/transactions/(?P<id>[^/]+)$"), "find"),
    ("PUT", re.compile(r"^/transactions/(?P<id>[^/]+)/submit_for_settlement$"), "capture"),
    ("PUT", re.compile(r"^/transactions/(?P<id>[^/]+)/void$"), "void"),
    ("POST", re.compile(r"^/transactions/(?P<id>[^/]+)/refund$"), "refund"),
    ("PUT", re.compile(r"^/transactions/(?P<id>[^/]+)/settle$"), "settle"),
]


def _route(method: str, path: str) -> tuple[str, re.Match[str]] | None:
    for verb, pattern, operation in ROUTES:
        match = pattern.match(path)
        if verb == method and match:
            return operation, match
    return None


class FakeBraintreeGateway:
    """Serve ``FakeBraintreeState`` over HTTP on 127.0.0.1 (a free port unless given)."""

    def __init__(
        self,
        merchant_id: str = "evledger_merchant",
        public_key: str = "fake_public",
        private_key: str = "fake_private",
        port: int = 0,
        currencies: dict[str, str] | None = None,
        default_currency: str = "EUR",
    ) -> None:
        self.merchant_id = merchant_id
        self.public_key = public_key
        self.private_key = private_key
        self.state = FakeBraintreeState(currencies, default_currency)
        token = base64.b64encode(f"{public_key}:{private_key}".encode()).decode()
        self._expected_auth = f"Basic {token}"
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> FakeBraintreeGateway:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def drop_next_response(self, operation: str) -> None:
        """Apply the next ``operation`` (sale, capture, void, refund) but send no answer."""
        with self.state.lock:
            self.state.drop.add(operation)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def _dispatch(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Authorization") != gateway._expected_auth:
                    return self._send(401, b"")
                if not self.headers.get("X-ApiVersion"):
                    return self._send(426, b"")
                prefix = f"/merchants/{gateway.merchant_id}"
                if not self.path.startswith(prefix):
                    return self._send(404, b"")
                path = self.path[len(prefix) :].split("?")[0]
                routed = _route(method, path)
                if routed is None:
                    return self._send(404, b"")
                operation, match = routed
                params: dict[str, XmlValue] = {}
                if body.strip():
                    _, parsed = parse_xml(body)
                    params = parsed if isinstance(parsed, dict) else {}
                with gateway.state.lock:
                    gateway.state.requests.append((operation, path))
                    try:
                        status, payload = self._apply(
                            operation, match.groupdict().get("id"), params
                        )
                    except GatewayError as error:
                        status, payload = (
                            error.status,
                            (to_xml(error.tag, error.body) if error.tag else b""),
                        )
                    drop = operation in gateway.state.drop
                    gateway.state.drop.discard(operation)
                if drop:
                    self.close_connection = True
                    return None
                return self._send(status, payload)

            def _apply(
                self, operation: str, txn_id: str | None, params: dict[str, XmlValue]
            ) -> tuple[int, bytes]:
                state = gateway.state
                inner = params.get("transaction") if "transaction" in params else params
                inner = inner if isinstance(inner, dict) else {}
                if operation == "sale":
                    status, txn = state.sale(inner)
                    return status, to_xml("transaction", txn.to_xml_dict())
                if operation in {"search_ids", "search"}:
                    found = state.search(params)
                    if operation == "search_ids":
                        ids = [t.id for t in found]
                        return 200, to_xml("search-results", {"page-size": 50, "ids": ids})
                    items = "".join(_node("transaction", t.to_xml_dict()) for t in found)
                    tag = "credit-card-transactions"
                    xml = f'<{tag} type="collection">{items}</{tag}>'
                    return 200, xml.encode()
                assert txn_id is not None
                if operation == "find":
                    txn = state._get(txn_id)
                elif operation == "capture":
                    txn = state.submit_for_settlement(txn_id, inner)
                elif operation == "void":
                    txn = state.void(txn_id)
                elif operation == "refund":
                    txn = state.refund(txn_id, inner)
                else:
                    txn = state.settle(txn_id)
                return 200, to_xml("transaction", txn.to_xml_dict())

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
