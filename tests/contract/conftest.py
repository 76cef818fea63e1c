"""Fixtures for the provider contract suite: one harness per adapter.

- sandbox: in-process;
- stripe: the Stripe adapter against stripe-mock, started here on a free loopback port
  (binary from $STRIPE_MOCK_BIN, then PATH, then .tools/bin/ as scripts/install-stripe-mock.sh
  puts it). A missing binary FAILS the tests: CI must install it, nothing is skipped;
- braintree: the Braintree adapter against tests/fakes/braintree_gateway.py on a free port.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import stripe

from connectors.providers.base import PaymentProvider
from connectors.providers.braintree import BraintreeProvider
from connectors.providers.sandbox import Fault, SandboxProvider
from connectors.providers.sandbox_remote import RemoteSandbox
from connectors.providers.stripe import StripeProvider
from entrypoints.sandbox_service import make_server
from tests.fakes.braintree_gateway import FakeBraintreeGateway

REPO = Path(__file__).resolve().parents[2]
STARTUP_LIMIT_S = 30.0  # a guard against a hung start, not a measured assertion
LISTENING = re.compile(r"Listening for HTTP at address: (\S+)")


def stripe_mock_binary() -> str | None:
    candidates = [os.environ.get("STRIPE_MOCK_BIN"), shutil.which("stripe-mock")]
    candidates.append(str(REPO / ".tools" / "bin" / "stripe-mock"))
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="session")
def stripe_mock_url() -> Iterator[str]:
    binary = stripe_mock_binary()
    if binary is None:
        pytest.fail(
            "stripe-mock not found ($STRIPE_MOCK_BIN, PATH, .tools/bin/stripe-mock). "
            "Install it with scripts/install-stripe-mock.sh (needs Go).",
            pytrace=False,
        )
    # Empty ports: the OS picks free ones and stripe-mock prints them; both on loopback only.
    process = subprocess.Popen(
        [binary, "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        address = _await_address(lines, process)
        url = f"http://{address}"
        # The port is bound when it prints; one request proves it serves the API.
        response = httpx.get(f"{url}/v1/balance", auth=("sk_test_contract", ""), timeout=10)
        assert response.status_code == 200, response.text
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _await_address(lines: queue.Queue[str], process: subprocess.Popen[str]) -> str:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=STARTUP_LIMIT_S)
        except queue.Empty:
            pytest.fail(f"stripe-mock printed no HTTP address; output: {seen}", pytrace=False)
        seen.append(line.rstrip())
        match = LISTENING.search(line)
        if match:
            return match.group(1)
        if process.poll() is not None:
            pytest.fail(f"stripe-mock exited: {seen}", pytrace=False)


@pytest.fixture(scope="session")
def braintree_gateway() -> Iterator[FakeBraintreeGateway]:
    gateway = FakeBraintreeGateway().start()
    try:
        yield gateway
    finally:
        gateway.stop()


class RecordingRequestsClient(stripe.RequestsClient):
    """stripe-python's requests client, remembering each request's method, URL and headers."""

    def __init__(self) -> None:
        super().__init__(timeout=30)
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> Any:
        self.sent.append((method.upper(), url, dict(headers or {})))
        return super().request(method, url, headers, post_data)


@dataclass
class Harness:
    """An adapter plus what a test needs to drive it."""

    name: str
    provider: PaymentProvider
    approve_token: str
    decline_token: str
    currency: str = "EUR"
    settle: Callable[[str], None] = lambda reference: None
    lose_next_response: Callable[[str], None] = lambda operation: None
    recorder: RecordingRequestsClient | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def sandbox_harness() -> Harness:
    sandbox = SandboxProvider()
    return Harness(
        name="sandbox",
        provider=sandbox,
        approve_token="tok_visa",
        decline_token="tok_decline",
        lose_next_response=lambda op: sandbox.inject(Fault.TIMEOUT_AFTER, op),
    )


@pytest.fixture
def sandbox_http_harness() -> Iterator[Harness]:
    """The sandbox served over HTTP (``evledger sandbox serve``) and its client adapter."""
    sandbox = SandboxProvider("sandbox-http")
    server = make_server(sandbox, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = RemoteSandbox(f"http://127.0.0.1:{server.server_address[1]}", timeout=10)
    try:
        yield Harness(
            name="sandbox-http",
            provider=client,
            approve_token="tok_visa",
            decline_token="tok_decline",
            lose_next_response=lambda op: sandbox.inject(Fault.TIMEOUT_AFTER, op),
        )
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def stripe_harness(url: str) -> Harness:
    recorder = RecordingRequestsClient()
    provider = StripeProvider.connect("sk_test_contract", api_base=url, http_client=recorder)
    return Harness(
        name="stripe",
        provider=provider,
        approve_token="pm_card_visa",
        decline_token="pm_card_chargeDeclined",
        recorder=recorder,
    )


def braintree_harness(gateway: FakeBraintreeGateway) -> Harness:
    provider = BraintreeProvider.connect(
        merchant_id=gateway.merchant_id,
        public_key=gateway.public_key,
        private_key=gateway.private_key,
        environment=BraintreeProvider.local_environment("127.0.0.1", gateway.port),
        timeout=30,
    )
    operations = {"authorize": "sale", "capture": "capture", "void": "void", "refund": "refund"}
    return Harness(
        name="braintree",
        provider=provider,
        approve_token="fake-valid-nonce",
        decline_token="fake-processor-declined-visa-nonce",
        settle=lambda reference: provider._gateway.testing.settle_transaction(reference),
        lose_next_response=lambda op: gateway.drop_next_response(operations[op]),
        extras={"gateway": gateway},
    )


@pytest.fixture(params=["sandbox", "sandbox-http", "stripe", "braintree"])
def harness(request: pytest.FixtureRequest) -> Harness:
    """Every adapter: assertions that hold for stateless stripe-mock too."""
    if request.param == "sandbox":
        return sandbox_harness()
    if request.param == "sandbox-http":
        return cast(Harness, request.getfixturevalue("sandbox_http_harness"))
    if request.param == "stripe":
        return stripe_harness(request.getfixturevalue("stripe_mock_url"))
    return braintree_harness(request.getfixturevalue("braintree_gateway"))


@pytest.fixture(params=["sandbox", "sandbox-http", "braintree"])
def stateful_harness(request: pytest.FixtureRequest) -> Harness:
    """Adapters whose backend keeps state. stripe-mock answers every call with canned objects
    (a PaymentIntent is always ``requires_payment_method``), so state assertions cannot hold
    against it; they are checked against real Stripe test mode only (not in CI)."""
    if request.param == "sandbox":
        return sandbox_harness()
    if request.param == "sandbox-http":
        return cast(Harness, request.getfixturevalue("sandbox_http_harness"))
    return braintree_harness(request.getfixturevalue("braintree_gateway"))
