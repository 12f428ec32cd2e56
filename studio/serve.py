"""The studio's own command line: `cstudio studio [options]` and `python app.py [options]`."""

import argparse


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse the studio's options and serve it until stopped; 1 with a one-line error."""
    from pipeline.config.settings import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog=prog, description="Constitution Studio: open the studio in a browser."
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (beyond 127.0.0.1, give a login: --auth)",
    )
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--workspace",
        default=None,
        help="workspace folder (default: $CONSTITUTION_STUDIO_WORKSPACE or ./workspace)",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="default model: 'embedded', a local folder or a hub id",
    )
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASS",
        help="require this login (repeat for several users)",
    )
    parser.add_argument(
        "--auth-file", default=None, help="require a login from this file (one USER:PASS a line)"
    )
    parser.add_argument(
        "--login-free-tries",
        type=int,
        default=3,
        metavar="N",
        help="wrong passwords in a row (per address and per user) before tries "
        "must wait: 2, 4, 8 … s (default 3)",
    )
    parser.add_argument(
        "--login-lockout",
        type=float,
        default=300,
        metavar="SECONDS",
        help="the longest wait between tries after wrong passwords (default 300)",
    )
    args = parser.parse_args(argv)
    if args.login_free_tries < 1 or not 1 <= args.login_lockout <= 86_400:
        parser.error("--login-free-tries must be at least 1 and --login-lockout 1 to 86400 s")
    from pipeline.core import cpu
    from pipeline.core.errors import StudioError

    cpu.use_physical_cores()  # before torch loads (see pipeline.core.cpu)
    from studio import access
    from studio.app import launch
    from studio.login_guard import LoginPolicy

    try:
        launch(
            args.host,
            args.port,
            args.workspace,
            args.model,
            access.logins(args.auth, args.auth_file),
            LoginPolicy(args.login_free_tries, args.login_lockout),
        )
    except StudioError as exc:
        parser.exit(1, f"error: {exc}\n")
    return 0
