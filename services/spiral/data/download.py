"""Placeholder: `spiral data download` (owned by the data work)."""
def download_command() -> None:
    raise NotImplementedError("spiral data download")
