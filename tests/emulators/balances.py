"""A local HTTP emulator of the providers' balance endpoints, for tests.

One server answers every provider's balance API, each in the shape of that
provider's public reference (paths relative to the server root; channels use
``base_url = emulator.base_url``, i.e. ``…/v1``):

- DeepSeek ``GET /user/balance``: ``{is_available, balance_infos: [{currency,
  total_balance, granted_balance, topped_up_balance}]}`` (amounts as strings)
- OpenRouter ``GET /v1/credits``: ``{data: {total_credits, total_usage}}`` —
  only for management keys (others get 403) — and ``GET /v1/key``:
  ``{data: {label, limit, limit_remaining, usage, is_free_tier, …}}``
- SiliconFlow ``GET /v1/user/info``: ``{code: 20000, message, status, data:
  {…, balance, chargeBalance, totalBalance}}`` (strings)
- Moonshot ``GET /v1/users/me/balance``: ``{code: 0, data: {available_balance,
  voucher_balance, cash_balance}, scode, status}`` (numbers)
- one-api / new-api resellers ``GET /v1/dashboard/billing/subscription``
  (``hard_limit_usd``…) and ``GET /v1/dashboard/billing/usage``
  (``total_usage`` in cents)

A key's balance is set with :meth:`BalanceEmulator.set_balance`; every
provider reports that amount (the "used" part each shape also needs is a
fixed 25.75). Unknown keys get a 401 in OpenAI's error shape. Known keys may
also ``POST /v1/chat/completions`` (a minimal one-token answer), so the same
channel can be probed.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["USED", "BalanceEmulator"]

USED = Decimal("25.75")


class BalanceEmulator:
    def __init__(self) -> None:
        self.balances: dict[str, Decimal] = {}
        self.currencies: dict[str, str] = {}
        self.management_keys: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []  # (path with query, bearer key)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        assert self._server is not None, "BalanceEmulator is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def set_balance(self, key: str, amount: str, *, currency: str = "CNY", management: bool = False) -> None:
        """``key`` now has ``amount`` left (DeepSeek reports it in ``currency``)."""
        self.balances[key] = Decimal(amount)
        self.currencies[key] = currency
        if management:
            self.management_keys.add(key)

    def reset(self) -> None:
        self.balances.clear()
        self.currencies.clear()
        self.management_keys.clear()
        self.requests.clear()

    def start(self) -> BalanceEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                emulator._answer(self)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                emulator._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="balance-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ answers

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        self.requests.append((request.path, key or None))
        path = urlsplit(request.path).path
        if key not in self.balances:
            return self._send(
                request,
                401,
                {"error": {"message": "Authentication Fails (invalid api key)", "type": "authentication_error"}},
            )
        balance = self.balances[key]
        route = {
            "/user/balance": self._deepseek,
            "/v1/credits": self._openrouter_credits,
            "/v1/key": self._openrouter_key,
            "/v1/user/info": self._siliconflow,
            "/v1/users/me/balance": self._moonshot,
            "/v1/dashboard/billing/subscription": self._subscription,
            "/v1/dashboard/billing/usage": self._usage,
            "/v1/chat/completions": self._chat,
        }.get(path)
        if route is None:
            return self._send(
                request, 404, {"error": {"message": f"Invalid URL (GET {path})", "type": "invalid_request_error"}}
            )
        status, body = route(key, balance)
        self._send(request, status, body)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _deepseek(self, key: str, balance: Decimal) -> tuple[int, dict]:
        granted = min(balance, Decimal("10.00"))
        info = {
            "currency": self.currencies[key],
            "total_balance": f"{balance:.2f}",
            "granted_balance": f"{granted:.2f}",
            "topped_up_balance": f"{balance - granted:.2f}",
        }
        return 200, {"is_available": balance > 0, "balance_infos": [info]}

    def _openrouter_credits(self, key: str, balance: Decimal) -> tuple[int, dict]:
        if key not in self.management_keys:
            return 403, {"error": {"code": 403, "message": "Only management keys can fetch credits"}}
        return 200, {"data": {"total_credits": float(balance + USED), "total_usage": float(USED)}}

    def _openrouter_key(self, key: str, balance: Decimal) -> tuple[int, dict]:
        limit = float(balance + USED)
        return 200, {
            "data": {
                "label": f"{key[:10]}...{key[-3:]}",
                "limit": limit,
                "limit_reset": None,
                "limit_remaining": float(balance),
                "include_byok_in_limit": False,
                "usage": float(USED),
                "usage_daily": 0,
                "usage_weekly": 0,
                "usage_monthly": float(USED),
                "is_free_tier": False,
                "rate_limit": {"requests": 1000, "interval": "1h"},
            }
        }

    def _siliconflow(self, key: str, balance: Decimal) -> tuple[int, dict]:
        gift = min(balance, Decimal("0.88"))
        return 200, {
            "code": 20000,
            "message": "OK",
            "status": True,
            "data": {
                "id": "userid",
                "name": "username",
                "image": "",
                "email": "user@example.com",
                "isAdmin": False,
                "balance": f"{gift:.2f}",
                "status": "normal",
                "introduction": "",
                "role": "user",
                "chargeBalance": f"{balance - gift:.2f}",
                "totalBalance": f"{balance:.2f}",
            },
        }

    def _moonshot(self, key: str, balance: Decimal) -> tuple[int, dict]:
        voucher = min(balance, Decimal("3"))
        return 200, {
            "code": 0,
            "data": {
                "available_balance": float(balance),
                "voucher_balance": float(voucher),
                "cash_balance": float(balance - voucher),
            },
            "scode": "0x0",
            "status": True,
        }

    def _subscription(self, key: str, balance: Decimal) -> tuple[int, dict]:
        limit = float(balance + USED)
        return 200, {
            "object": "billing_subscription",
            "has_payment_method": True,
            "soft_limit_usd": limit,
            "hard_limit_usd": limit,
            "system_hard_limit_usd": limit,
            "access_until": 0,
        }

    def _usage(self, key: str, balance: Decimal) -> tuple[int, dict]:
        return 200, {"object": "list", "total_usage": float(USED * 100)}

    def _chat(self, key: str, balance: Decimal) -> tuple[int, dict]:
        return 200, {
            "id": "chatcmpl-balance-emulator",
            "object": "chat.completion",
            "created": 0,
            "model": "emulated",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
        }
