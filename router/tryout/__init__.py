"""Trying rules: dry run, explain, what-if, the builder's send-test and rule tests kept in git."""
