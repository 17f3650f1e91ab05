"""Client side: the only code that opens associations to other nodes."""
