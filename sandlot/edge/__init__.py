"""What faces users besides the REST API: the SSH gateway (and, later, preview URLs)."""
