"""Placeholder: `spiral serve <role>` (owned by the services work)."""
def serve_command() -> None:
    raise NotImplementedError("spiral serve")
