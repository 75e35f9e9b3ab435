import sys

from nolb.cli import main

sys.exit(main())
