"""``python -m gpuvio ...`` runs the ``gpuvio`` command line (see :mod:`gpuvio.cli`)."""

from gpuvio.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
