"""``python -m github_app serve|send``."""

from github_app.cli import main

raise SystemExit(main())
