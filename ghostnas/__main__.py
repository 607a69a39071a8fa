"""``python -m ghostnas`` is the ``ghostnas`` command."""

import sys

from ghostnas.cli import main

sys.exit(main())
