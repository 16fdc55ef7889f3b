"""The `sandlot` command line, built on the SDK (`sandlot.sdk`) for everything remote."""
