"""Constitution Studio pipeline: the library behind the studio and the CLI (no UI imports)."""
