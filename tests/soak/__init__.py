"""The fault soak: ``gw.ingest`` against the emulator with every fault switched on."""
