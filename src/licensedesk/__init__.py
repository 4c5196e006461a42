"""licensedesk: the licensing back end of per-user licensed products."""

__version__ = "0.1.0"
