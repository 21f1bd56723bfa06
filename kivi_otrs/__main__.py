"""``python -m kivi_otrs`` runs the command line."""

from .cli import main

main()
