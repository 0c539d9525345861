"""The `conquer` command line: run, compare and benchmark one divide-and-conquer job on every executor."""
