"""Actions: what each command does, between the CLI (arguments) and the adapters (I/O)."""
