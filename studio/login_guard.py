"""Sign-ins that resist guessing: after a few wrong passwords from one address or for one
user, each further try must wait twice as long as the last (2, 4, 8 … s) up to a lockout,
and every failure is logged with the client's address.

Gradio's login route cannot see who is asking, so the guard sits in front of it as ASGI
middleware: it refuses a try made too soon (429, with the wait in the message and in
Retry-After) before the password is even checked, and learns the outcome from the status
Gradio answers (400 wrong, 200 right). The password check itself stays Gradio's call to our
constant-time checker. Behind a reverse proxy every client has the proxy's address: then the
per-user limit is the one that holds.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import parse_qs

LOGIN_PATHS = ("/login", "/login/")
MAX_TRACKED = 10_000  # keys remembered at most, so a flood of made-up user names stays bounded


@dataclass(frozen=True)
class LoginPolicy:
    """`free_tries` wrong passwords in a row cost nothing; the n-th after them waits
    2**n s, capped at `lockout` s."""

    free_tries: int = 3
    lockout: float = 300.0

    def wait_after(self, failures: int) -> float:
        if failures < self.free_tries:
            return 0.0
        return min(2.0 ** (failures - self.free_tries + 1), self.lockout)


@dataclass
class Failures:
    """Wrong passwords in a row per key ('address 1.2.3.4', 'user alice') and when the last
    one came."""

    policy: LoginPolicy = field(default_factory=LoginPolicy)
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, tuple[int, float]] = field(default_factory=dict)

    def wait(self, key: str) -> float:
        """Seconds before `key` may try again (0 when it may now)."""
        count, last = self.counts.get(key, (0, 0.0))
        return max(0.0, last + self.policy.wait_after(count) - self.clock()) if count else 0.0

    def fail(self, key: str) -> int:
        count = self.counts.pop(key, (0, 0.0))[0] + 1
        self.counts[key] = (count, self.clock())
        self._forget_old()
        return count

    def succeed(self, key: str) -> None:
        self.counts.pop(key, None)

    def _forget_old(self) -> None:
        """Drop keys idle for twice the lockout, and the oldest past MAX_TRACKED."""
        now = self.clock()
        for key in [
            k for k, (_, last) in self.counts.items() if now - last > 2 * self.policy.lockout
        ]:
            del self.counts[key]
        while len(self.counts) > MAX_TRACKED:
            del self.counts[next(iter(self.counts))]


def refusal(address: str, user: str, failures: Failures) -> str:
    """Why a sign-in is refused before its password is checked ('' when it may go ahead)."""
    waits = [
        (failures.wait(f"address {address}"), f"from {address}"),
        (failures.wait(f"user {user}"), f"for the user '{user}'"),
    ]
    seconds, who = max(waits)
    if seconds <= 0:
        return ""
    return (
        f"Too many wrong passwords {who}: sign-in is locked for {seconds:.0f} more "
        "seconds. Each wrong password after the first few doubles the wait, up to "
        f"{failures.policy.lockout:.0f} s."
    )


Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class LoginGuard:
    """ASGI middleware throttling POST /login (see the module's docstring)."""

    def __init__(
        self, app, policy: LoginPolicy = LoginPolicy(), log: Callable[[str], None] | None = None
    ):
        self.app = app
        self.failures = Failures(policy)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            await self.app(scope, receive, with_refusal_script(send))
            return
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith(LOGIN_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:  # the form is read here, then handed on unchanged
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        user = (parse_qs(body.decode("utf-8", "replace")).get("username") or [""])[0].strip()
        address = (scope.get("client") or ("unknown", 0))[0]
        refused = refusal(address, user, self.failures)
        if refused:
            self.log(f"sign-in refused for '{user}' from {address}: {refused}")
            await _answer(
                send,
                429,
                refused,
                self.failures.wait(f"address {address}") or self.failures.wait(f"user {user}"),
            )
            return
        status: list[int] = []

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, watch)
        keys = (f"address {address}", f"user {user}")
        if status and status[0] == 200:
            for key in keys:
                self.failures.succeed(key)
        elif status and status[0] in (400, 401):
            count = max(self.failures.fail(key) for key in keys)
            wait = self.failures.policy.wait_after(count)
            self.log(
                f"failed sign-in for '{user}' from {address} ({count} in a row"
                + (f"; next try in {wait:.0f} s)" if wait else ")")
            )


def with_refusal_script(send: Send) -> Send:
    """`send` for a GET: an HTML page (the login page is the studio's index before sign-in,
    where the studio's own head is not yet loaded) gets LOGIN_REFUSAL_JS in its head."""
    start: dict = {}
    chunks: list[bytes] = []

    async def inject(message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if not headers.get(b"content-type", b"").startswith(b"text/html") or headers.get(
                b"content-encoding"
            ):
                await send(message)
                return
            start.update(message)
            return
        if not start:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks).replace(b"</head>", LOGIN_REFUSAL_JS.encode() + b"</head>", 1)
        headers = [
            (k, str(len(body)).encode() if k == b"content-length" else v)
            for k, v in start.get("headers", [])
        ]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return inject


async def _answer(send: Send, status: int, detail: str, retry_after: float) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(max(1, round(retry_after))).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Gradio's login page shows a message for 400 only: this shows our 429's reason there too.
LOGIN_REFUSAL_JS = """
<script>
(() => {
  const fetchFirst = window.fetch;
  window.fetch = async (...args) => {
    const response = await fetchFirst(...args);
    const url = String((args[0] && args[0].url) || args[0]);
    if (!/\\/login\\/?$/.test(url)) return response;
    let box = document.getElementById("login-refusal");
    if (response.status !== 429) { if (box) box.remove(); return response; }
    const body = await response.clone().json().catch(() => ({}));
    if (!box) {
      box = document.createElement("div");
      box.id = "login-refusal";
      box.setAttribute("role", "alert");
      box.style.cssText = "position:fixed;top:1rem;left:50%;transform:translateX(-50%);" +
        "z-index:1000;padding:.75rem 1rem;border-radius:.5rem;max-width:40rem;" +
        "background:#ffebee;color:#b71c1c;border:1px solid #e57373";
      document.body.appendChild(box);
    }
    box.textContent = body.detail || "Too many wrong passwords: wait, then try again.";
    return response;
  };
})();
</script>
"""
