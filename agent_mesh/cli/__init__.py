"""Entry points: parse arguments, call the core, render. The only layer that prints or exits."""
