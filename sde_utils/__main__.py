"""``python -m sde_utils`` is ``python -m sde_utils.pipeline.run``."""

import sys

from sde_utils.pipeline.run import main

sys.exit(main())
