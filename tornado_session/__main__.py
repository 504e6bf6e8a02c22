"""``python -m tornado_session``: the operators' command line (see `tornado_session.cli`)."""

from .cli import main

main()
