"""`cstudio`, the console command: `cstudio <command>` is `python -m pipeline <command>`, and
`cstudio studio [options]` opens the studio (`python app.py [options]`)."""

from __future__ import annotations

import sys

STUDIO_LINE = (
    "cstudio studio [--host H] [--port P] [--workspace DIR] [--auth USER:PASS …] "
    "opens the studio in a browser (cstudio studio --help)"
)


def main(argv: list[str] | None = None) -> int:
    typed, argv = argv is None, list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["studio"]:
        from studio.serve import main as serve

        return serve(argv[1:], prog="cstudio studio")
    from pipeline.cli import main as run

    return run(argv, prog="cstudio", epilog=STUDIO_LINE, warm_start=typed)


if __name__ == "__main__":
    sys.exit(main())
