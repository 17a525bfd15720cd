"""`python -m trellis` is the `trellis` command."""

from trellis.cli import main

main()
