"""Lets `python -m stack` run the qcstack command line."""

import sys

from stack.cli import main

sys.exit(main())
