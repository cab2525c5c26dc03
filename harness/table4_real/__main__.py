"""python -m harness.table4_real plan|run (see the package's docstring)."""
import sys

from .cli import main

sys.exit(main())
