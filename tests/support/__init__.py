"""Real servers and certificates for trustpool's tests."""
