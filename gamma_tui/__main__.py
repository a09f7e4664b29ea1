"""`python -m gamma_tui` is the `gamma-tui` command."""

from gamma_tui.cli import main

main()
