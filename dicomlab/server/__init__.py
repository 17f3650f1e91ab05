"""Server side: the embedded SCP (LocalPACS) and its archive."""
