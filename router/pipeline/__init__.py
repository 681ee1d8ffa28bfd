"""The event's way through: ingest, store, match, render, enqueue, deliver, record (see ARCHITECTURE.md)."""
