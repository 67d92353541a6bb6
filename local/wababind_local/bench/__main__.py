"""`python -m wababind_local.bench`."""

import sys

from wababind_local.bench.runner import main

sys.exit(main())
