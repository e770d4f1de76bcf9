"""`python -m drawcli` (also what `torchrun -m drawcli` runs)."""

from drawcli.cli import main

main()
