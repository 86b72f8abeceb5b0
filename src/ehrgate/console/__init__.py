"""EHRGate console package."""
