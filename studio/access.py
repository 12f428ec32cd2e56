"""Who may reach the studio and which files it serves.

The studio listens on 127.0.0.1 unless told otherwise. Served beyond this machine it should
ask for a login: `--auth USER:PASS`, `--auth-file FILE` (one USER:PASS a line) or the
environment variable below. It serves no file of the workspace but the exports a download
button hands out: the database, run folders, adapters and logs are never fetchable.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from pipeline.core.errors import StudioError
from pipeline.data.store import Store

AUTH_ENV = "CONSTITUTION_STUDIO_AUTH"  # USER:PASS, several separated by commas


class AccessError(StudioError):
    """A login setting that cannot be used."""


def parse_credential(text: str, where: str) -> tuple[str, str]:
    """USER:PASS → (user, password); both must be non-empty (the password may hold ':')."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise AccessError(f"{where}: a login is USER:PASS with both parts non-empty.")
    return user, password


def read_auth_file(path: str | Path) -> list[tuple[str, str]]:
    """Logins from a file of USER:PASS lines (blank lines and lines starting with # skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"Cannot read the auth file {path}: {exc}") from None
    logins = [
        parse_credential(line, f"{path}, line {n}")
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not logins:
        raise AccessError(f"The auth file {path} holds no USER:PASS line.")
    return logins


def logins(
    auth: list[str], auth_file: str | None, environ: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """Every login given by flags, file and environment, in that order."""
    environ = os.environ if environ is None else environ
    found = [parse_credential(a, "--auth") for a in auth]
    if auth_file:
        found += read_auth_file(auth_file)
    found += [
        parse_credential(a, AUTH_ENV) for a in environ.get(AUTH_ENV, "").split(",") if a.strip()
    ]
    return found


def checker(allowed: list[tuple[str, str]]) -> Callable[[str, str], bool]:
    """Gradio's login check, comparing in constant time so timing reveals no password."""

    def check(user: str, password: str) -> bool:
        ok = False
        for u, p in allowed:
            ok |= hmac.compare_digest(u.encode(), (user or "").encode()) & hmac.compare_digest(
                p.encode(), (password or "").encode()
            )
        return ok

    return check


def sharing_notice(allowed: list[tuple[str, str]], store: Store) -> str:
    """What every login must know: they all work in one workspace."""
    users = sorted({user for user, _ in allowed})
    if len(users) == 1:
        return f"Sign-in required: one login ({users[0]}), workspace {store.workspace}."
    return (
        f"Sign-in required: {len(users)} logins ({', '.join(users)}) share ONE workspace, "
        f"{store.workspace}: each sees and can change the others' constitutions, labels, "
        "runs and uploaded files. Start one studio per workspace to keep people apart."
    )


async def unknown_api_name(request: Request, exc: Exception) -> JSONResponse:
    """A call to an API name the studio does not have is the caller's mistake, not a crash."""
    name = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    return JSONResponse({"detail": f"No API named '{name}' in this studio."}, status_code=404)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, has_login: bool) -> str:
    """The loud warning for a studio reachable from other machines with no login ('' if none)."""
    if is_loopback(host) or has_login:
        return ""
    bar = "!" * 78
    return (
        f"{bar}\n!! WARNING: the studio listens on {host} with NO LOGIN. Anyone who can reach "
        f"this\n!! machine can read your constitutions and labels and start jobs. Add "
        f"--auth USER:PASS,\n!! --auth-file FILE or ${AUTH_ENV}, or listen on 127.0.0.1.\n{bar}"
    )


def served_paths(store: Store) -> tuple[list[str], list[str]]:
    """(allowed, blocked) for Gradio: only the exports folder is served; the database (with
    its WAL files) and the run folders are blocked outright, whatever else Gradio allows."""
    store.exports.mkdir(parents=True, exist_ok=True)
    blocked = [
        store.path,
        store.path.with_name(store.path.name + "-wal"),
        store.path.with_name(store.path.name + "-shm"),
        store.runs,
    ]
    return [str(store.exports)], [str(p) for p in blocked]
