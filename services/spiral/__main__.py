from spiral.cli import app

app()
