"""`python -m wababind_local.fc_emulator`."""

import sys

from wababind_local.fc_emulator.serve import main

sys.exit(main())
