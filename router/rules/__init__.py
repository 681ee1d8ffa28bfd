"""Rules: the file format, YAML loading, compiling filters and templates, UI rules and hot reload."""
