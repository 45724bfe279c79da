"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class EtlnormError(Exception):
    """Base class: anything raised as this is the user's to fix, not a bug."""


class ConfigError(EtlnormError):
    """Bad settings or config file."""


class DatabaseError(EtlnormError):
    """The database cannot be reached or is not set up."""


class OntologyError(EtlnormError):
    """Unknown ontology, unreadable source, or a release that failed to load."""


class TableError(EtlnormError):
    """A warehouse table or column that does not exist or has the wrong shape."""
