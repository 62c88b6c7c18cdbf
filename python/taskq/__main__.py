"""`python3 -m taskq run <module>[:<worker>] <type> [--key=value]...`: immediate mode (see _immediate.py)."""
import sys

from ._immediate import main

sys.exit(main(sys.argv[1:]))
