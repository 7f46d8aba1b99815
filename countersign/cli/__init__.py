"""The `countersign` command: `main.py` holds the Typer app, one module per command group."""
