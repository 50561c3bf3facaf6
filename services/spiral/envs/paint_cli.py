"""Placeholder: `spiral paint` (owned by the environment work)."""
def paint_command() -> None:
    raise NotImplementedError("spiral paint")
