"""etlnorm: biomedical term normalization inside the data warehouse."""

__version__ = "0.1.0"
