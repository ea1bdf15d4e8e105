"""`python -m retention` is the `retention` command."""

from retention.cli.main import main

if __name__ == "__main__":
    main()
