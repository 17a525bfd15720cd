"""The platform: pure metadata and workflow cores, and the runtime that does the I/O."""
