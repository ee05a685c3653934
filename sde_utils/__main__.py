"""``python -m sde_utils`` is ``python -m sde_utils.run``."""

import sys

from .run import main

sys.exit(main())
