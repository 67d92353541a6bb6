"""Outcome sinks: where each outcome record goes (log, callback, SLS)."""
