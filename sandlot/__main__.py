"""`python -m sandlot` is the `sandlot` command."""

from sandlot.cli.app import main

main()
