"""``python -m medi2i`` runs the command line."""

from medi2i.cli.main import main

main()
