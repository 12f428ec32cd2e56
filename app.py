"""python app.py → launches the studio on the embedded default model (as `cstudio studio`)."""

import sys

from studio.serve import main

if __name__ == "__main__":
    sys.exit(main())
