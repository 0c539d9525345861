"""`python -m conquer` is the same as the `conquer` command."""

from conquer.cli import main

main()
