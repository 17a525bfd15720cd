"""Where I/O happens: storage, records, queries, the REST API."""
