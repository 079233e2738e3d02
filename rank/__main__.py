"""`python -m rank ...` runs the `rank` command."""
import sys

from rank.cli import main

sys.exit(main())
