"""Placeholder: `spiral train` and `spiral sample`."""
def train_command() -> None:
    raise NotImplementedError("spiral train")
def sample_command() -> None:
    raise NotImplementedError("spiral sample")
