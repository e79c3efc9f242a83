"""cltm: Cross-Lingual Transfer Matrices for paralinguistic speech tasks."""

__version__ = "0.1.0"
