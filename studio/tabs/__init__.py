"""The studio's tabs, one module each: module-level handlers (tested without a browser) and a
`build()` that only lays out and wires them."""
