"""`python -m wababind_local.cli`."""

import sys

from wababind_local.cli import main

sys.exit(main())
