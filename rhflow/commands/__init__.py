"""One module per command of the command line; ``rhflow.cli`` only wires them to click."""
