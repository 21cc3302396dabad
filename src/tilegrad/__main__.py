import sys

from tilegrad.cli import main

sys.exit(main())
