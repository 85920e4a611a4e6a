"""Plain types and errors, with no I/O."""
