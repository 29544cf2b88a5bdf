"""`python -m tuner ARGS` is `tuner ARGS`; local workers are started this way."""

from tuner.cli import app

app(prog_name="tuner")
