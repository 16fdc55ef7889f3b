"""What faces users besides the REST API: the SSH gateway and the preview-URL proxy."""
