"""``python -m keybroker`` runs the command line."""

from keybroker.cli import main

if __name__ == "__main__":
    main()
