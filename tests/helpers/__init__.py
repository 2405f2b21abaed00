"""Test helpers shared across test packages (import as tests.helpers.<module>)."""
