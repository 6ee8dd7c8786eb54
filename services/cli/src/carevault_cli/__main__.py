import sys

from carevault_cli.main import main

sys.exit(main())
