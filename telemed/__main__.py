import sys

from telemed.cli import main

sys.exit(main())
