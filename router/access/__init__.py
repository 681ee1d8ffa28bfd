"""Who may do what: users, tokens and sessions, the guard on every route, the audit log, stored secrets."""
