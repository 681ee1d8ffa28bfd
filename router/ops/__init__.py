"""What a worker does beside delivering: heartbeat, metrics port, alert rounds, retention."""
