"""``python -m samrs.cli``."""

from samrs.cli import main

main()
