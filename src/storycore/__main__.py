"""``python -m storycore``."""

import sys

from storycore.cli import main

if __name__ == "__main__":
    sys.exit(main())
