"""The ``medi2i`` command line (click). Subcommands import heavy modules lazily."""
