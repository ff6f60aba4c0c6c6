"""Helpers shared by the test suites: a plugin process, a KMS client, a secret scan."""
