import sys

from reprzoo.cli.main import main

sys.exit(main())
