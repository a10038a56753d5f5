import sys

from mgte_hf.cli import main


sys.exit(main())
