"""EHRGate demo package."""
