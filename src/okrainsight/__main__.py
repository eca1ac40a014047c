"""``python -m okrainsight ...`` runs the ``okra`` command line (for environments without the script)."""

from okrainsight.cli import main

if __name__ == "__main__":
    main()
