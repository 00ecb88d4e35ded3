"""`python -m deployments.cli`: the `nova` command."""

import sys

from deployments.cli.parser import main

sys.exit(main())
