"""The durable record: database, models, migrations, and what is read from it (event log, replay, stats)."""
