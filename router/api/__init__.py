"""HTTP controllers: thin handlers over plain functions."""
