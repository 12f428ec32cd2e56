import sys

from pipeline.cli import main

if __name__ == "__main__":  # a child process that imports this module must not run the CLI
    sys.exit(main(warm_start=True))
