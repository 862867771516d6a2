import sys

from errands.cli import main

sys.exit(main())
