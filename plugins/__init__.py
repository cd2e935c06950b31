"""Frame readers and writers of cyc, one module each, registered under cyc.readers / cyc.writers."""
