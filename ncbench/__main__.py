"""`python -m ncbench`: the command line (`ncbench.cli.main`), as the `ncbench` script runs it."""

from ncbench.cli import main

if __name__ == "__main__":
    main()
