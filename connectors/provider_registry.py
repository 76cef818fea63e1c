"""Which payment providers this process talks to, and the routing rules between them.

The sandbox is always there (one shared ``SandboxProvider`` per name and process, so the
connector, the reconciliation command and the tests see the same state). Stripe and Braintree
come from a JSON/TOML file (``--providers FILE``) or from their own environment variables; not
from ``EVLEDGER_*``, which ``Settings`` reserves and validates::

    STRIPE_API_KEY, STRIPE_API_BASE (stripe-mock), STRIPE_WEBHOOK_SECRET (comma-separated)
    BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY, BRAINTREE_PRIVATE_KEY,
    BRAINTREE_ENVIRONMENT (sandbox | production | http://host:port)

File form (TOML shown; JSON has the same shape)::

    [providers.stripe]
    kind = "stripe"
    api_key_env = "STRIPE_API_KEY"        # or api_key = "sk_test_..."
    api_base = "http://127.0.0.1:12111"

    [providers.acquirer]                   # the sandbox as a service (evledger sandbox serve)
    kind = "sandbox-http"
    url = "http://127.0.0.1:12112"

    [[routing]]                            # first match wins; default: every provider in order
    network_id = "demo-network"
    currencies = ["EUR"]
    providers = ["stripe", "sandbox"]

    [webhooks]
    stripe_secrets = ["whsec_..."]
"""

from __future__ import annotations

import json
import os
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.providers.base import PaymentProvider
from connectors.providers.sandbox import SandboxProvider
from connectors.webhooks import BraintreeWebhookKey
from ledger.errors import ValidationError
from ledger.settlement.routing import RoutingRule


class ProviderConfigError(ValidationError):
    code = "PROVIDER_CONFIG"


class UnknownProvider(ValidationError):
    code = "UNKNOWN_PROVIDER"


_sandboxes: dict[str, SandboxProvider] = {}
_sandboxes_lock = threading.Lock()


def shared_sandbox(name: str = "sandbox") -> SandboxProvider:
    """The process's sandbox called ``name`` (created on first use)."""
    with _sandboxes_lock:
        if name not in _sandboxes:
            _sandboxes[name] = SandboxProvider(name)
        return _sandboxes[name]


@dataclass
class ProviderRegistry:
    """Providers by name, the routing rules, and the webhook secrets."""

    providers: dict[str, PaymentProvider]
    rules: tuple[RoutingRule, ...] = ()
    stripe_webhook_secrets: tuple[str, ...] = ()
    braintree_webhook_keys: tuple[BraintreeWebhookKey, ...] = ()

    def __post_init__(self) -> None:
        if not self.rules:
            self.rules = (RoutingRule(providers=tuple(self.providers)),)
        for rule in self.rules:
            unknown = [p for p in rule.providers if p not in self.providers]
            if unknown:
                raise ProviderConfigError(
                    "routing rule names unconfigured providers", providers=",".join(unknown)
                )

    def get(self, name: str) -> PaymentProvider:
        """The provider called ``name``. Raises UnknownProvider."""
        try:
            return self.providers[name]
        except KeyError:
            raise UnknownProvider(
                f"no provider {name!r} configured", known=",".join(self.providers)
            ) from None

    @classmethod
    def of(cls, *providers: PaymentProvider, rules: Sequence[RoutingRule] = ()) -> ProviderRegistry:
        """A registry of the given instances (tests, the demo)."""
        return cls({p.name: p for p in providers}, tuple(rules))


def load_providers(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> ProviderRegistry:
    """Build the registry: the shared sandbox, plus whatever the file and environment configure.
    Raises ProviderConfigError on an unreadable file or an incomplete provider."""
    environ = os.environ if environ is None else environ
    config = _read(config_file) if config_file else {}
    providers: dict[str, PaymentProvider] = {"sandbox": shared_sandbox()}
    for name, spec in (config.get("providers") or {}).items():
        providers[name] = _build(name, dict(spec), environ)
    if "STRIPE_API_KEY" in environ and "stripe" not in providers:
        providers["stripe"] = _build("stripe", {"kind": "stripe"}, environ)
    if "BRAINTREE_MERCHANT_ID" in environ and "braintree" not in providers:
        providers["braintree"] = _build("braintree", {"kind": "braintree"}, environ)
    rules = tuple(_rule(raw) for raw in config.get("routing") or [])
    hooks = config.get("webhooks") or {}
    stripe_secrets = list(hooks.get("stripe_secrets") or [])
    stripe_secrets += [s for s in environ.get("STRIPE_WEBHOOK_SECRET", "").split(",") if s]
    bt_keys = [
        BraintreeWebhookKey(k["public_key"], k["private_key"])
        for k in hooks.get("braintree_keys") or []
    ]
    if environ.get("BRAINTREE_PUBLIC_KEY") and environ.get("BRAINTREE_PRIVATE_KEY"):
        bt_keys.append(
            BraintreeWebhookKey(environ["BRAINTREE_PUBLIC_KEY"], environ["BRAINTREE_PRIVATE_KEY"])
        )
    return ProviderRegistry(providers, rules, tuple(stripe_secrets), tuple(bt_keys))


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ProviderConfigError(f"cannot read provider config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ProviderConfigError(f"provider config {path} is not a table/object")
    return data


def _value(spec: dict[str, Any], key: str, environ: Mapping[str, str], env: str) -> str | None:
    """``spec[key]``, else the variable ``spec[key + '_env']`` names, else ``env``."""
    if spec.get(key):
        return str(spec[key])
    return environ.get(str(spec.get(f"{key}_env") or env)) or None


def _build(name: str, spec: dict[str, Any], environ: Mapping[str, str]) -> PaymentProvider:
    kind = spec.get("kind", name)
    if kind == "sandbox":
        return shared_sandbox(name)
    if kind == "sandbox-http":
        from connectors.providers.sandbox_remote import RemoteSandbox

        url = _value(spec, "url", environ, "SANDBOX_URL")
        if not url:
            raise ProviderConfigError(
                "sandbox-http needs url (evledger sandbox serve)", provider=name
            )
        return RemoteSandbox(url, name=name, timeout=float(spec.get("timeout", 5.0)))
    if kind == "stripe":
        from connectors.providers.stripe import StripeProvider

        api_key = _value(spec, "api_key", environ, "STRIPE_API_KEY")
        if not api_key:
            raise ProviderConfigError("stripe needs api_key or STRIPE_API_KEY", provider=name)
        api_base = _value(spec, "api_base", environ, "STRIPE_API_BASE")
        return StripeProvider.connect(api_key, api_base=api_base, name=name)
    if kind == "braintree":
        from connectors.providers.braintree import BraintreeProvider

        values = {
            key: _value(spec, key, environ, f"BRAINTREE_{key.upper()}")
            for key in ("merchant_id", "public_key", "private_key", "environment")
        }
        missing = [k for k in ("merchant_id", "public_key", "private_key") if not values[k]]
        if missing:
            raise ProviderConfigError("braintree config incomplete", missing=",".join(missing))
        env = values["environment"] or "sandbox"
        environment: Any = env
        if env.startswith("http://"):
            host, _, port = env.removeprefix("http://").rstrip("/").partition(":")
            environment = BraintreeProvider.local_environment(host, int(port or 80))
        return BraintreeProvider.connect(
            merchant_id=str(values["merchant_id"]),
            public_key=str(values["public_key"]),
            private_key=str(values["private_key"]),
            environment=environment,
            name=name,
            merchant_accounts=spec.get("merchant_accounts"),
        )
    raise ProviderConfigError(f"unknown provider kind {kind!r}", provider=name)


def _rule(raw: Mapping[str, Any]) -> RoutingRule:
    try:
        return RoutingRule(
            providers=tuple(raw["providers"]),
            network_id=raw.get("network_id"),
            currencies=frozenset(raw.get("currencies") or ()),
            payment_methods=frozenset(raw.get("payment_methods") or ()),
        )
    except (KeyError, TypeError) as exc:
        raise ProviderConfigError(f"bad routing rule {dict(raw)!r}: {exc!r}") from exc
