"""Keep Microsoft Sentinel threat intelligence in step with a MISP instance."""

__version__ = "0.1.0"
