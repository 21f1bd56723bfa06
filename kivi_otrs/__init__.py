"""kivi-otrs: kivitendo customers as the OTRS customer backend, and OTRS tickets as kivitendo order positions."""

__version__ = "0.1.0"
