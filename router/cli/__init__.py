"""The ``router`` command: ``commands`` (the group and its own commands; the console script's entry
point), ``processes`` (dev, serve, worker), ``delivery``, ``users``, ``ops``, and ``common`` (what
they share)."""
