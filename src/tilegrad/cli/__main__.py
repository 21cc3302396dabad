"""``python -m tilegrad.cli``: the ``tilegrad`` command without the installed script."""
import sys

from .main import main

sys.exit(main())
