"""The commands that run on a server's own host with the server's code: `serve`,
`doctor` and recipe builds. Every other command is a client of the API, on the SDK
alone (an import contract in pyproject.toml holds them to it)."""
