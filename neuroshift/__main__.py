import sys

from neuroshift.cli.main import main

sys.exit(main())
