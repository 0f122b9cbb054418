"""Test helpers: real etcd / nats-server processes and fixtures for trimicro tests."""
