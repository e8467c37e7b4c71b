"""``python -m lab`` (what ``scripts/lab`` runs): the lab CLI, from a checkout."""

import sys

from lab.cli import main

sys.exit(main())
