"""`python -m wababind_local.cams_simulator`."""

import sys

from wababind_local.cams_simulator.serve import main

sys.exit(main())
