"""The embedded stack: local Ray, S3 and MLflow on loopback, demo data."""

from asgard_ray.local.stack import PortInUse, ServiceStatus, StackError, down, service_env, status, up

__all__ = ["PortInUse", "ServiceStatus", "StackError", "down", "service_env", "status", "up"]
