"""Tenant-aware smart partitioning for Apache Kafka."""

__version__ = "0.1.0"
