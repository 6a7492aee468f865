"""`python -m nnsight_codi`: the `nnsight-codi` command line."""

import sys

from .cli import main

sys.exit(main())
