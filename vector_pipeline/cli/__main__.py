"""``python -m vector_pipeline.cli``: the ``vector-pipeline`` command."""

import sys

from . import main

sys.exit(main())
